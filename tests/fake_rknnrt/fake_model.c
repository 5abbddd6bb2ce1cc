/* The fake model format (see README.md) and its forward pass. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fake_internal.h"

static const uint8_t MAGIC[8] = {'R', 'K', 'F', 'A', 'K', 'E', 0, 1};
#define FORMAT_VERSION 1u
#define FORMAT_VERSION_LAYOUTS 2u /* adds a layout to every input */

/* Limits keep every size computation far from overflow and every allocation modest. */
#define MAX_TENSORS 64u
#define MAX_LAYERS 256u
#define MAX_WIDTH (1u << 20)
#define MAX_BATCH (1u << 16)
#define MAX_LAYER_WEIGHTS (1u << 26)
#define MAX_ACTIVATIONS (1u << 26) /* max_batch * max_width */

typedef struct {
    const uint8_t* p;
    size_t left;
} reader;

static int read_u32(reader* r, uint32_t* v) {
    if (r->left < 4) return 0;
    *v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 |
         (uint32_t)r->p[3] << 24;
    r->p += 4;
    r->left -= 4;
    return 1;
}

static int read_f32(reader* r, float* v) {
    uint32_t u;
    if (!read_u32(r, &u)) return 0;
    memcpy(v, &u, sizeof *v);
    return 1;
}

static int read_floats(reader* r, float* out, uint64_t n) {
    if (n > r->left / 4) return 0;
    for (uint64_t i = 0; i < n; i++) read_f32(r, &out[i]);
    return 1;
}

static int read_tensor(reader* r, fake_tensor* t) {
    uint32_t len, zp;
    if (!read_u32(r, &len) || len == 0 || len >= RKNN_MAX_NAME_LEN || len > r->left) return 0;
    if (memchr(r->p, 0, len)) return 0;
    memcpy(t->name, r->p, len);
    t->name[len] = 0;
    r->p += len;
    r->left -= len;
    if (!read_u32(r, &t->width) || !read_f32(r, &t->scale) || !read_u32(r, &zp)) return 0;
    t->zp = (int32_t)zp;
    return t->width > 0 && t->width <= MAX_WIDTH && t->scale > 0.0f && isfinite(t->scale) &&
           t->zp >= -128 && t->zp <= 127;
}

/* Version 2: u32 n_dims (2 or 4); for 4: u32 c, h, w, fmt, native_fmt, w_stride, c2. */
static int read_layout(reader* r, fake_tensor* t) {
    t->n_dims = 2;
    uint32_t n_dims;
    if (!read_u32(r, &n_dims) || (n_dims != 2 && n_dims != 4)) return 0;
    if (n_dims == 2) return 1;
    t->n_dims = 4;
    if (!read_u32(r, &t->c) || !read_u32(r, &t->h) || !read_u32(r, &t->w) ||
        !read_u32(r, &t->fmt) || !read_u32(r, &t->native_fmt) || !read_u32(r, &t->w_stride) ||
        !read_u32(r, &t->c2))
        return 0;
    if (!t->c || !t->h || !t->w || (uint64_t)t->c * t->h * t->w != t->width) return 0;
    if (t->fmt != RKNN_TENSOR_NCHW && t->fmt != RKNN_TENSOR_NHWC) return 0;
    if (t->native_fmt > RKNN_TENSOR_NC1HWC2 || t->w_stride < t->w || t->w_stride > MAX_WIDTH)
        return 0;
    if (t->native_fmt == RKNN_TENSOR_NC1HWC2 ? (t->c2 == 0 || t->c2 > 64) : t->c2 != 0) return 0;
    fake_layout native = fake_native_layout(t);
    return fake_layout_elems(&native) <= MAX_WIDTH;
}

static int names_distinct(const fake_model* m) {
    uint32_t n = m->n_inputs + m->n_outputs;
    for (uint32_t i = 0; i < n; i++) {
        const char* a = i < m->n_inputs ? m->inputs[i].name : m->outputs[i - m->n_inputs].name;
        for (uint32_t j = i + 1; j < n; j++) {
            const char* b =
                j < m->n_inputs ? m->inputs[j].name : m->outputs[j - m->n_inputs].name;
            if (strcmp(a, b) == 0) return 0;
        }
    }
    return 1;
}

void fake_model_unref(fake_model* m) {
    if (!m || atomic_fetch_sub(&m->refs, 1) != 1) return;
    if (m->layers)
        for (uint32_t i = 0; i < m->n_layers; i++) {
            free(m->layers[i].weight);
            free(m->layers[i].bias);
        }
    free(m->layers);
    free(m->inputs);
    free(m->outputs);
    free(m->batches);
    free(m);
}

static fake_model* invalid(fake_model* m, const char* what) {
    fake_model_unref(m);
    fake_fail(RKNN_ERR_MODEL_INVALID, "not a valid fake model: %s", what);
    return NULL;
}

static int parse_layers(reader* r, fake_model* m) {
    uint32_t width = m->in_features;
    for (uint32_t i = 0; i < m->n_layers; i++) {
        fake_layer* l = &m->layers[i];
        if (!read_u32(r, &l->n_in) || !read_u32(r, &l->n_out) || !read_u32(r, &l->activation))
            return 0;
        if (l->n_in != width || l->n_out == 0 || l->n_out > MAX_WIDTH ||
            l->activation >= ACT_COUNT || (uint64_t)l->n_in * l->n_out > MAX_LAYER_WEIGHTS)
            return 0;
        uint64_t n_w = (uint64_t)l->n_in * l->n_out;
        if ((n_w + l->n_out) > r->left / 4) return 0;
        l->weight = malloc(n_w * sizeof(float));
        l->bias = malloc(l->n_out * sizeof(float));
        if (!l->weight || !l->bias) return 0;
        read_floats(r, l->weight, n_w);
        read_floats(r, l->bias, l->n_out);
        if (m->dtype == RKNN_TENSOR_FLOAT16) /* a float16 model holds float16 weights */
            for (uint64_t k = 0; k < n_w; k++) l->weight[k] = fake_f16_to_f32(fake_f32_to_f16(l->weight[k]));
        m->weight_bytes += (n_w + l->n_out) * fake_type_size(m->dtype);
        if (l->n_out > m->max_width) m->max_width = l->n_out;
        width = l->n_out;
    }
    return width == m->out_features;
}

fake_model* fake_model_parse(const uint8_t* data, size_t size) {
    reader r = {data, size};
    uint32_t version, dtype;
    if (!data || size < sizeof MAGIC || memcmp(data, MAGIC, sizeof MAGIC) != 0) {
        fake_fail(RKNN_ERR_MODEL_INVALID, "not a fake model (magic bytes RKFAKE\\0\\1 missing)");
        return NULL;
    }
    r.p += sizeof MAGIC;
    r.left -= sizeof MAGIC;
    fake_model* m = calloc(1, sizeof *m);
    if (!m) return invalid(m, "out of memory");
    atomic_init(&m->refs, 1);
    if (!read_u32(&r, &version) || (version != FORMAT_VERSION && version != FORMAT_VERSION_LAYOUTS))
        return invalid(m, "version");
    if (!read_u32(&r, &dtype) || (dtype != RKNN_TENSOR_FLOAT32 && dtype != RKNN_TENSOR_FLOAT16 &&
                                  dtype != RKNN_TENSOR_INT8))
        return invalid(m, "dtype");
    m->dtype = (rknn_tensor_type)dtype;
    if (!read_u32(&r, &m->n_inputs) || !read_u32(&r, &m->n_outputs) ||
        !read_u32(&r, &m->n_layers) || !read_u32(&r, &m->n_batches))
        return invalid(m, "truncated header");
    if (m->n_inputs == 0 || m->n_inputs > MAX_TENSORS || m->n_outputs == 0 ||
        m->n_outputs > MAX_TENSORS || m->n_layers == 0 || m->n_layers > MAX_LAYERS ||
        m->n_batches == 0 || m->n_batches > RKNN_MAX_DYNAMIC_SHAPE_NUM)
        return invalid(m, "counts out of range");
    m->batches = calloc(m->n_batches, sizeof *m->batches);
    m->inputs = calloc(m->n_inputs, sizeof *m->inputs);
    m->outputs = calloc(m->n_outputs, sizeof *m->outputs);
    m->layers = calloc(m->n_layers, sizeof *m->layers);
    if (!m->batches || !m->inputs || !m->outputs || !m->layers) return invalid(m, "out of memory");
    for (uint32_t i = 0; i < m->n_batches; i++) {
        if (!read_u32(&r, &m->batches[i]) || m->batches[i] == 0 || m->batches[i] > MAX_BATCH)
            return invalid(m, "batch sizes");
        for (uint32_t j = 0; j < i; j++)
            if (m->batches[j] == m->batches[i]) return invalid(m, "repeated batch size");
        if (m->batches[i] > m->max_batch) m->max_batch = m->batches[i];
    }
    for (uint32_t i = 0; i < m->n_inputs; i++) {
        if (!read_tensor(&r, &m->inputs[i])) return invalid(m, "input tensor");
        m->inputs[i].n_dims = 2;
        if (version == FORMAT_VERSION_LAYOUTS && !read_layout(&r, &m->inputs[i]))
            return invalid(m, "input layout");
        /* Dynamic shapes of 4-D inputs are not emulated. */
        if (m->inputs[i].n_dims == 4 && m->n_batches > 1) return invalid(m, "4-D dynamic input");
        m->inputs[i].offset = m->in_features;
        m->in_features += m->inputs[i].width;
    }
    for (uint32_t i = 0; i < m->n_outputs; i++) {
        if (!read_tensor(&r, &m->outputs[i])) return invalid(m, "output tensor");
        m->outputs[i].n_dims = 2;
        m->outputs[i].offset = m->out_features;
        m->out_features += m->outputs[i].width;
    }
    if (m->in_features > MAX_WIDTH || m->out_features > MAX_WIDTH) return invalid(m, "widths");
    if (!names_distinct(m)) return invalid(m, "tensor names repeat");
    m->max_width = m->in_features;
    if (!parse_layers(&r, m)) return invalid(m, "layers");
    if ((uint64_t)m->max_batch * m->max_width > MAX_ACTIVATIONS) return invalid(m, "too large");
    uint32_t len;
    if (!read_u32(&r, &len) || len >= sizeof m->custom || len != r.left)
        return invalid(m, "custom string or trailing bytes");
    memcpy(m->custom, r.p, len);
    m->custom[len] = 0;
    return m;
}

int fake_model_has_batch(const fake_model* m, uint32_t batch) {
    for (uint32_t i = 0; i < m->n_batches; i++)
        if (m->batches[i] == batch) return 1;
    return 0;
}

static void activate_row(uint32_t act, double* v, uint32_t n) {
    switch (act) {
    case ACT_RELU:
        for (uint32_t j = 0; j < n; j++) v[j] = v[j] > 0.0 ? v[j] : 0.0;
        break;
    case ACT_SIGMOID:
        for (uint32_t j = 0; j < n; j++) v[j] = 1.0 / (1.0 + exp(-v[j]));
        break;
    case ACT_TANH:
        for (uint32_t j = 0; j < n; j++) v[j] = tanh(v[j]);
        break;
    case ACT_SOFTMAX: {
        double top = v[0], sum = 0.0;
        for (uint32_t j = 1; j < n; j++) top = v[j] > top ? v[j] : top;
        for (uint32_t j = 0; j < n; j++) sum += v[j] = exp(v[j] - top);
        for (uint32_t j = 0; j < n; j++) v[j] /= sum;
        break;
    }
    default: break;
    }
}

/* Accumulates in double and rounds once to float32 (then float16 for a float16 model),
 * so numpy's float64 reference agrees whatever order either side sums in. */
void fake_forward(const fake_model* m, uint32_t batch, const float* x, float* y, float* a,
                  float* b, double* acc) {
    const float* src = x;
    for (uint32_t li = 0; li < m->n_layers; li++) {
        const fake_layer* l = &m->layers[li];
        float* dst = li + 1 == m->n_layers ? y : (li % 2 == 0 ? a : b);
        for (uint32_t r = 0; r < batch; r++) {
            const float* row = src + (size_t)r * l->n_in;
            for (uint32_t j = 0; j < l->n_out; j++) acc[j] = 0.0;
            for (uint32_t i = 0; i < l->n_in; i++) {
                const double xi = row[i];
                const float* w = l->weight + (size_t)i * l->n_out;
                for (uint32_t j = 0; j < l->n_out; j++) acc[j] += xi * w[j];
            }
            for (uint32_t j = 0; j < l->n_out; j++) acc[j] += l->bias[j];
            activate_row(l->activation, acc, l->n_out);
            float* out = dst + (size_t)r * l->n_out;
            for (uint32_t j = 0; j < l->n_out; j++) {
                float v = (float)acc[j];
                out[j] = m->dtype == RKNN_TENSOR_FLOAT16 ? fake_f16_to_f32(fake_f32_to_f16(v)) : v;
            }
        }
        src = dst;
    }
}
