/* Layouts of 4-D (image-like) inputs: NCHW, NHWC with padded rows, NC1HWC2. */
#include <string.h>

#include "fake_internal.h"

fake_layout fake_plain_layout(const fake_tensor* t) {
    fake_layout l = {t->fmt, t->c, t->h, t->w, t->w, 0};
    return l;
}

fake_layout fake_native_layout(const fake_tensor* t) {
    fake_layout l = {t->native_fmt, t->c, t->h, t->w, t->w_stride, t->c2};
    if (l.fmt == RKNN_TENSOR_NCHW) l.w_stride = t->w; /* rows are padded in NHWC/NC1HWC2 only */
    return l;
}

static uint32_t blocks(const fake_layout* l) { return (l->c + l->c2 - 1) / l->c2; }

size_t fake_layout_elems(const fake_layout* l) {
    switch (l->fmt) {
    case RKNN_TENSOR_NHWC: return (size_t)l->h * l->w_stride * l->c;
    case RKNN_TENSOR_NC1HWC2: return (size_t)blocks(l) * l->h * l->w_stride * l->c2;
    default: return (size_t)l->c * l->h * l->w;
    }
}

static size_t offset(const fake_layout* l, uint32_t c, uint32_t h, uint32_t w) {
    switch (l->fmt) {
    case RKNN_TENSOR_NHWC: return ((size_t)h * l->w_stride + w) * l->c + c;
    case RKNN_TENSOR_NC1HWC2:
        return (((size_t)(c / l->c2) * l->h + h) * l->w_stride + w) * l->c2 + c % l->c2;
    default: return ((size_t)c * l->h + h) * l->w + w;
    }
}

void fake_gather(const fake_tensor* t, const fake_layout* l, size_t esize, uint32_t batch,
                 const uint8_t* src, uint8_t* dst) {
    if (t->n_dims != 4) {
        memcpy(dst, src, (size_t)batch * t->width * esize);
        return;
    }
    const size_t row = fake_layout_elems(l);
    const int nhwc = t->fmt == RKNN_TENSOR_NHWC; /* the plain order the model computes in */
    for (uint32_t n = 0; n < batch; n++) {
        const uint8_t* base = src + (size_t)n * row * esize;
        size_t k = (size_t)n * t->width;
        for (uint32_t a = 0; a < (nhwc ? t->h : t->c); a++)
            for (uint32_t b = 0; b < (nhwc ? t->w : t->h); b++)
                for (uint32_t z = 0; z < (nhwc ? t->c : t->w); z++, k++) {
                    size_t at = nhwc ? offset(l, z, a, b) : offset(l, a, b, z);
                    memcpy(dst + k * esize, base + at * esize, esize);
                }
    }
}
