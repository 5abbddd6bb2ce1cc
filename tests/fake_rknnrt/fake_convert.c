/* Element conversions between caller types and a model's native type. */
#include <math.h>
#include <string.h>

#include "fake_internal.h"

/* Round-to-nearest-even, like numpy's float32 -> float16 cast, so that
 * FakeModel.reference can reproduce the fake bit for bit. */
uint16_t fake_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t exp = (x >> 23) & 0xffu;
    uint32_t mant = x & 0x7fffffu;
    if (exp == 0xffu) return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u | (mant >> 13) : 0u));
    int32_t e = (int32_t)exp - 127 + 15;
    if (e >= 0x1f) return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        uint32_t full = mant | 0x800000u;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = full >> shift;
        uint32_t rem = full & ((1u << shift) - 1u);
        uint32_t halfway = 1u << (shift - 1u);
        if (rem > halfway || (rem == halfway && (half & 1u))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)e << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fffu;
    /* A carry out of the mantissa correctly bumps the exponent (up to infinity). */
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) half++;
    return (uint16_t)half;
}

float fake_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    uint32_t x = exp == 0x1fu ? sign | 0x7f800000u | (mant << 13)
                              : sign | ((exp + 112u) << 23) | (mant << 13);
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

/* clip(round_half_even(x / scale) + zp, -128, 127), in float32 like numpy. */
int8_t fake_quantize(float x, float scale, int32_t zp) {
    float v = x / scale;
    if (v != v) v = 0.0f;
    v = rintf(v) + (float)zp;
    if (v < -128.0f) v = -128.0f;
    if (v > 127.0f) v = 127.0f;
    return (int8_t)v;
}

size_t fake_type_size(rknn_tensor_type t) {
    switch (t) {
    case RKNN_TENSOR_FLOAT32: return 4;
    case RKNN_TENSOR_FLOAT16: return 2;
    case RKNN_TENSOR_INT8:
    case RKNN_TENSOR_UINT8: return 1;
    default: return 0;
    }
}

static float load_value(rknn_tensor_type t, const void* in, size_t i) {
    switch (t) {
    case RKNN_TENSOR_FLOAT32: {
        float f;
        memcpy(&f, (const uint8_t*)in + 4 * i, sizeof f);
        return f;
    }
    case RKNN_TENSOR_FLOAT16: {
        uint16_t h;
        memcpy(&h, (const uint8_t*)in + 2 * i, sizeof h);
        return fake_f16_to_f32(h);
    }
    case RKNN_TENSOR_INT8: return (float)((const int8_t*)in)[i];
    case RKNN_TENSOR_UINT8: return (float)((const uint8_t*)in)[i];
    default: return 0.0f;
    }
}

float fake_native_value(rknn_tensor_type native, const fake_tensor* t, const void* in, size_t i) {
    if (native == RKNN_TENSOR_INT8)
        return (float)(((const int8_t*)in)[i] - t->zp) * t->scale;
    return load_value(native, in, i);
}

static void store_native(rknn_tensor_type native, const fake_tensor* t, void* out, size_t i,
                         float v) {
    switch (native) {
    case RKNN_TENSOR_FLOAT32: memcpy((uint8_t*)out + 4 * i, &v, sizeof v); break;
    case RKNN_TENSOR_FLOAT16: {
        uint16_t h = fake_f32_to_f16(v);
        memcpy((uint8_t*)out + 2 * i, &h, sizeof h);
        break;
    }
    case RKNN_TENSOR_INT8: ((int8_t*)out)[i] = fake_quantize(v, t->scale, t->zp); break;
    default: break;
    }
}

void fake_to_native(rknn_tensor_type native, const fake_tensor* t, rknn_tensor_type src,
                    const void* in, void* out, size_t n) {
    if (src == native && native != RKNN_TENSOR_INT8) {
        memcpy(out, in, n * fake_type_size(native));
        return;
    }
    for (size_t i = 0; i < n; i++) store_native(native, t, out, i, load_value(src, in, i));
}

void fake_from_native(rknn_tensor_type native, const fake_tensor* t, rknn_tensor_type dst,
                      const void* in, void* out, size_t n) {
    if (dst == native) {
        memcpy(out, in, n * fake_type_size(native));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        float v = fake_native_value(native, t, in, i);
        memcpy((uint8_t*)out + 4 * i, &v, sizeof v);
    }
}
