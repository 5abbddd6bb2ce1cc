/*
 * The matrix-multiply API (rknn_matmul_api.h) of the test-double librknnrt.
 *
 * A matmul context is a model-less context slot of the fake (fake_ctx_open) so that
 * rknn_create_mem / rknn_destroy_mem accept its handle, as the real runtime's do.
 * Layouts, alignments and segment sizes follow the official header for RK3588/RK3576,
 * RK3566/RK3568 and RK3562 (RKRT_FAKE_SOC). The real runtime checks almost nothing
 * and crashes instead; every call that would have crashed it returns an error here
 * AND counts "matmul_unsafe", so tests can prove a binding never makes one.
 * Products are exact and accumulate in float32 (float16 types) or int32 (int8 types).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fake_internal.h"

#pragma GCC visibility push(default)
#include "rknn_matmul_api.h"
#pragma GCC visibility pop

enum { T_A, T_B, T_C, T_COUNT };
static const char* const TENSOR_NAMES[T_COUNT] = {"A", "B", "C"};

typedef struct {
    int k_align, n_align;   /* also the B native tile: (N/n_align, K/k_align, n_align, k_align) */
    int a_sub_k;            /* A native layout (K/a_sub_k, M, a_sub_k) */
    int b_segment_k;        /* native B is split in segments of this many K rows; 0: never */
} mm_geometry;

typedef struct mm_ctx {
    rknn_matmul_ctx handle;
    rknn_matmul_info info;
    mm_geometry geo;
    int n_shapes, current; /* current < 0: no shape selected yet (dynamic contexts) */
    rknn_matmul_shape* shapes;
    rknn_matmul_io_attr* attrs;
    fake_binding bound[T_COUNT];
    int bound_shape[T_COUNT]; /* shape the A/C binding was made for */
    float a_scale, c_scale;
    int32_t a_zp, c_zp;
    float* b_scale; /* N values (one repeated for per-layer) */
    int32_t* b_zp;
    /* B unpacked to (N, K) float or int32 values, recomputed only when the bytes of the bound
     * B (kept in b_raw) or its shape change: the NPU reads B at every run, and so does this. */
    uint8_t* b_raw;
    void* b_cache;
    size_t b_bytes;
    int b_k, b_n;
    struct mm_ctx* next;
} mm_ctx;

static pthread_mutex_t mm_lock = PTHREAD_MUTEX_INITIALIZER;
static mm_ctx* mm_all;

static int unsafe(int code, const char* what) {
    fake_count(CNT_MATMUL_UNSAFE);
    return fake_fail(code, "%s (the real runtime does not check this and may crash)", what);
}

/* Enters the context like every rknn_* call (live handle, one thread at a time). */
static mm_ctx* mm_enter(rknn_matmul_ctx handle, fake_slot** slot, int* err) {
    if (!fake_ctx_enter(handle, slot, err)) return NULL;
    mm_ctx* m;
    pthread_mutex_lock(&mm_lock);
    for (m = mm_all; m && m->handle != handle; m = m->next) {
    }
    pthread_mutex_unlock(&mm_lock);
    if (!m) {
        fake_ctx_leave(*slot);
        *err = unsafe(RKNN_ERR_CTX_INVALID, "the handle is a model context, not a matmul context");
    }
    return m;
}

static const char* emulated_soc(void) {
    const char* soc = getenv("RKRT_FAKE_SOC");
    return soc && *soc ? soc : "rk3588";
}

static int is_fp16_ab(rknn_matmul_type t) {
    return t == RKNN_FLOAT16_MM_FLOAT16_TO_FLOAT32 || t == RKNN_FLOAT16_MM_FLOAT16_TO_FLOAT16;
}

static int emulated_type(rknn_matmul_type t) {
    return is_fp16_ab(t) || t == RKNN_INT8_MM_INT8_TO_INT32 || t == RKNN_INT8_MM_INT8_TO_INT8;
}

static rknn_tensor_type c_type(rknn_matmul_type t) {
    switch (t) {
    case RKNN_FLOAT16_MM_FLOAT16_TO_FLOAT32: return RKNN_TENSOR_FLOAT32;
    case RKNN_FLOAT16_MM_FLOAT16_TO_FLOAT16: return RKNN_TENSOR_FLOAT16;
    case RKNN_INT8_MM_INT8_TO_INT32: return RKNN_TENSOR_INT32;
    default: return RKNN_TENSOR_INT8;
    }
}

/* 0, or the error: the SoC has no matmul API the fake emulates. */
static int geometry(rknn_matmul_type t, mm_geometry* g) {
    const char* soc = emulated_soc();
    int fp16 = is_fp16_ab(t);
    if (strcmp(soc, "rk3588") == 0 || strcmp(soc, "rk3576") == 0) {
        *g = (mm_geometry){32, fp16 ? 16 : 32, fp16 ? 8 : 16, soc[4] == '8' ? 8192 : 4096};
    } else if (strcmp(soc, "rk3566") == 0 || strcmp(soc, "rk3568") == 0) {
        *g = (mm_geometry){fp16 ? 16 : 32, fp16 ? 8 : 16, fp16 ? 4 : 8, 0};
    } else if (strcmp(soc, "rk3562") == 0) {
        *g = (mm_geometry){32, fp16 ? 8 : 16, fp16 ? 8 : 16, 0};
    } else {
        return fake_fail(RKNN_ERR_DEVICE_UNMATCH, "the matmul API is not emulated on %s", soc);
    }
    return 0;
}

static size_t elem_size(rknn_tensor_type t) {
    return t == RKNN_TENSOR_FLOAT32 || t == RKNN_TENSOR_INT32 ? 4 : t == RKNN_TENSOR_FLOAT16 ? 2 : 1;
}

static void set_attr(rknn_matmul_tensor_attr* a, int tensor, rknn_tensor_type type,
                     int n_dims, const uint32_t* dims) {
    memset(a, 0, sizeof *a);
    strcpy(a->name, TENSOR_NAMES[tensor]);
    a->n_dims = (uint32_t)n_dims;
    uint64_t n = 1;
    for (int i = 0; i < n_dims; i++) n *= (a->dims[i] = dims[i]);
    a->type = type;
    a->size = (uint32_t)(n * elem_size(type));
}

/* Fills the attrs create reports for one shape (checked beforehand). */
static void describe(const rknn_matmul_info* info, const mm_geometry* g, int M, int K, int N,
                     rknn_matmul_io_attr* out) {
    rknn_tensor_type ab = is_fp16_ab(info->type) ? RKNN_TENSOR_FLOAT16 : RKNN_TENSOR_INT8;
    uint32_t m = (uint32_t)M, k = (uint32_t)K, n = (uint32_t)N;
    if (info->AC_layout == RKNN_MM_LAYOUT_NATIVE) {
        uint32_t a[3] = {k / (uint32_t)g->a_sub_k, m, (uint32_t)g->a_sub_k}, c[3] = {n / 4, m, 4};
        set_attr(&out->A, T_A, ab, 3, a);
        set_attr(&out->C, T_C, c_type(info->type), 3, c);
    } else {
        uint32_t a[2] = {m, k}, c[2] = {m, n};
        set_attr(&out->A, T_A, ab, 2, a);
        set_attr(&out->C, T_C, c_type(info->type), 2, c);
    }
    if (info->B_layout == RKNN_MM_LAYOUT_NATIVE) {
        uint32_t b[4] = {n / (uint32_t)g->n_align, k / (uint32_t)g->k_align, (uint32_t)g->n_align,
                         (uint32_t)g->k_align};
        set_attr(&out->B, T_B, ab, 4, b);
    } else if (info->B_layout == RKNN_MM_LAYOUT_TP_NORM) {
        uint32_t b[2] = {n, k};
        set_attr(&out->B, T_B, ab, 2, b);
    } else {
        uint32_t b[2] = {k, n};
        set_attr(&out->B, T_B, ab, 2, b);
    }
}

/* 0, or the error for a shape the NPU cannot take. */
static int check_shape(const mm_geometry* g, int M, int K, int N) {
    if (M <= 0 || K <= 0 || N <= 0) return unsafe(RKNN_ERR_PARAM_INVALID, "M, K and N must be > 0");
    if (K > RKNN_MATMUL_MAX_K) return unsafe(RKNN_ERR_PARAM_INVALID, "K > 10240");
    if (K % g->k_align) return unsafe(RKNN_ERR_PARAM_INVALID, "K is not aligned for this type and SoC");
    if (N % g->n_align) return unsafe(RKNN_ERR_PARAM_INVALID, "N is not aligned for this type and SoC");
    return 0;
}

static int check_info(const rknn_matmul_info* info, mm_geometry* g) {
    if (!emulated_type(info->type))
        return fake_fail(RKNN_ERR_PARAM_INVALID, "matmul type %d is not emulated", (int)info->type);
    int err = geometry(info->type, g);
    if (err) return err;
    if (info->B_layout < RKNN_MM_LAYOUT_NORM || info->B_layout > RKNN_MM_LAYOUT_TP_NORM ||
        info->AC_layout < RKNN_MM_LAYOUT_NORM || info->AC_layout > RKNN_MM_LAYOUT_NATIVE)
        return fake_fail(RKNN_ERR_PARAM_INVALID, "B_layout %d / AC_layout %d", info->B_layout,
                         info->AC_layout);
    /* int8 B: per-layer or per-channel, symmetric or not; float16 B: none. Per-group
     * quantization belongs to the int4/hybrid types, which are not emulated. */
    int int8_b = info->B_quant_type >= RKNN_QUANT_TYPE_PER_LAYER_SYM &&
                 info->B_quant_type <= RKNN_QUANT_TYPE_PER_CHANNEL_ASYM;
    if (info->AC_quant_type != 0 ||
        (info->B_quant_type != 0 && !(int8_b && !is_fp16_ab(info->type))))
        return fake_fail(RKNN_ERR_PARAM_INVALID, "quant types B %d / AC %d are not supported "
                         "for matmul type %d", info->B_quant_type, info->AC_quant_type,
                         (int)info->type);
    return 0;
}

static void mm_free(mm_ctx* m) {
    if (!m) return;
    free(m->shapes);
    free(m->attrs);
    free(m->b_scale);
    free(m->b_zp);
    free(m->b_raw);
    free(m->b_cache);
    free(m);
}

static int max_n(const mm_ctx* m) {
    int n = 0;
    for (int i = 0; i < m->n_shapes; i++)
        if (m->shapes[i].N > n) n = m->shapes[i].N;
    return n;
}

static int create(rknn_matmul_ctx* ctx, const rknn_matmul_info* info, int n_shapes,
                  const rknn_matmul_shape* shapes, rknn_matmul_io_attr* attrs, int dynamic) {
    *ctx = 0;
    mm_geometry g;
    int err = check_info(info, &g);
    for (int i = 0; !err && i < n_shapes; i++)
        err = check_shape(&g, shapes[i].M, shapes[i].K, shapes[i].N);
    for (int i = 1; !err && i < n_shapes && info->B_layout != RKNN_MM_LAYOUT_TP_NORM; i++)
        if (shapes[i].K != shapes[0].K || shapes[i].N != shapes[0].N)
            err = fake_fail(RKNN_ERR_PARAM_INVALID,
                            "dynamic shapes must share K and N unless B_layout is TP_NORM");
    if (err) return err;
    mm_ctx* m = calloc(1, sizeof *m);
    if (m) {
        m->shapes = malloc((size_t)n_shapes * sizeof *m->shapes);
        m->attrs = calloc((size_t)n_shapes, sizeof *m->attrs);
    }
    if (!m || !m->shapes || !m->attrs) {
        mm_free(m);
        return fake_fail(RKNN_ERR_MALLOC_FAIL, "out of memory creating a matmul context");
    }
    m->info = *info;
    m->geo = g;
    m->n_shapes = n_shapes;
    m->current = dynamic ? -1 : 0;
    memcpy(m->shapes, shapes, (size_t)n_shapes * sizeof *shapes);
    for (int i = 0; i < n_shapes; i++)
        describe(info, &g, shapes[i].M, shapes[i].K, shapes[i].N, &m->attrs[i]);
    int n = max_n(m);
    m->b_scale = malloc((size_t)n * sizeof *m->b_scale);
    m->b_zp = calloc((size_t)n, sizeof *m->b_zp);
    if (!m->b_scale || !m->b_zp) {
        mm_free(m);
        return fake_fail(RKNN_ERR_MALLOC_FAIL, "out of memory creating a matmul context");
    }
    for (int j = 0; j < n; j++) m->b_scale[j] = 1.0f;
    m->a_scale = m->c_scale = 1.0f;
    m->handle = fake_ctx_open();
    if (!m->handle) {
        mm_free(m);
        return RKNN_ERR_MALLOC_FAIL;
    }
    memcpy(attrs, m->attrs, (size_t)n_shapes * sizeof *attrs);
    pthread_mutex_lock(&mm_lock);
    m->next = mm_all;
    mm_all = m;
    pthread_mutex_unlock(&mm_lock);
    *ctx = m->handle;
    return RKNN_SUCC;
}

int rknn_matmul_create(rknn_matmul_ctx* ctx, rknn_matmul_info* info, rknn_matmul_io_attr* io_attr) {
    FAKE_ENTER(rknn_matmul_create, err);
    if (!ctx || !info || !io_attr) return unsafe(RKNN_ERR_PARAM_INVALID, "rknn_matmul_create: NULL argument");
    rknn_matmul_shape shape = {info->M, info->K, info->N};
    return create(ctx, info, 1, &shape, io_attr, 0);
}

int rknn_matmul_create_dynamic_shape(rknn_matmul_ctx* ctx, rknn_matmul_info* info, int shape_num,
                                     rknn_matmul_shape dynamic_shapes[],
                                     rknn_matmul_io_attr io_attrs[]) {
    FAKE_ENTER(rknn_matmul_create_dynamic_shape, err);
    if (!ctx || !info || !dynamic_shapes || !io_attrs)
        return unsafe(RKNN_ERR_PARAM_INVALID, "rknn_matmul_create_dynamic_shape: NULL argument");
    if (shape_num <= 0 || shape_num > RKNN_MAX_DYNAMIC_SHAPE_NUM)
        return unsafe(RKNN_ERR_PARAM_INVALID, "rknn_matmul_create_dynamic_shape: shape_num out of range");
    return create(ctx, info, shape_num, dynamic_shapes, io_attrs, 1);
}

int rknn_matmul_destroy(rknn_matmul_ctx ctx) {
    FAKE_ENTER(rknn_matmul_destroy, err);
    fake_slot* s;
    mm_ctx* m = mm_enter(ctx, &s, &err);
    if (!m) return err;
    pthread_mutex_lock(&mm_lock);
    mm_ctx** p = &mm_all;
    while (*p != m) p = &(*p)->next;
    *p = m->next;
    pthread_mutex_unlock(&mm_lock);
    fake_ctx_leave(s);
    mm_free(m); /* bound mems stay alive and counted, as with model contexts */
    return fake_ctx_close(ctx);
}

int rknn_matmul_set_core_mask(rknn_matmul_ctx context, rknn_core_mask core_mask) {
    FAKE_ENTER(rknn_matmul_set_core_mask, err);
    fake_slot* s;
    if (!mm_enter(context, &s, &err)) return err;
    fake_ctx_leave(s);
    return rknn_set_core_mask(context, core_mask); /* same SoC rules as model contexts */
}

static int tensor_of(const char* name) {
    for (int t = 0; t < T_COUNT; t++)
        if (strncmp(name, TENSOR_NAMES[t], RKNN_MAX_NAME_LEN) == 0) return t;
    return -1;
}

static rknn_matmul_tensor_attr* attr_of(rknn_matmul_io_attr* io, int t) {
    return t == T_A ? &io->A : t == T_B ? &io->B : &io->C;
}

static int same_attr(const rknn_matmul_tensor_attr* a, const rknn_matmul_tensor_attr* b) {
    return a->n_dims == b->n_dims && a->size == b->size && a->type == b->type &&
           memcmp(a->dims, b->dims, sizeof a->dims) == 0;
}

int rknn_matmul_set_io_mem(rknn_matmul_ctx ctx, rknn_tensor_mem* mem, rknn_matmul_tensor_attr* attr) {
    FAKE_ENTER(rknn_matmul_set_io_mem, err);
    fake_slot* s;
    mm_ctx* m = mm_enter(ctx, &s, &err);
    if (!m) return err;
    fake_mem* r = fake_mem_lookup(ctx, mem, &err);
    int t = attr ? tensor_of(attr->name) : -1;
    if (!r) {
        /* err set (and counted as bad_pointer) by the lookup */
    } else if (!attr) {
        err = unsafe(RKNN_ERR_PARAM_INVALID, "rknn_matmul_set_io_mem: NULL attr");
    } else if (m->current < 0) {
        err = unsafe(RKNN_ERR_PARAM_INVALID,
                     "rknn_matmul_set_io_mem before rknn_matmul_set_dynamic_shape");
    } else if (t < 0) {
        err = unsafe(RKNN_ERR_PARAM_INVALID, "rknn_matmul_set_io_mem: attr names no matmul tensor");
    } else if (!same_attr(attr, attr_of(&m->attrs[m->current], t))) {
        err = unsafe(RKNN_ERR_PARAM_INVALID,
                     "rknn_matmul_set_io_mem: attr differs from the one create reported for the "
                     "current shape");
    } else if (r->capacity < attr->size) {
        err = unsafe(RKNN_ERR_PARAM_INVALID,
                     "rknn_matmul_set_io_mem: mem smaller than the size create reported");
    } else {
        m->bound[t].mem = r;
        m->bound[t].serial = atomic_load(&r->serial);
        m->bound[t].type = attr->type;
        m->bound_shape[t] = m->current;
    }
    fake_ctx_leave(s);
    return err;
}

int rknn_matmul_set_dynamic_shape(rknn_matmul_ctx ctx, rknn_matmul_shape* shape) {
    FAKE_ENTER(rknn_matmul_set_dynamic_shape, err);
    fake_slot* s;
    mm_ctx* m = mm_enter(ctx, &s, &err);
    if (!m) return err;
    if (!shape) {
        err = unsafe(RKNN_ERR_PARAM_INVALID, "rknn_matmul_set_dynamic_shape: NULL shape");
    } else {
        err = fake_fail(RKNN_ERR_PARAM_INVALID,
                        "rknn_matmul_set_dynamic_shape: (%d, %d, %d) is not a shape given at "
                        "creation", shape->M, shape->K, shape->N);
        for (int i = 0; i < m->n_shapes; i++)
            if (memcmp(&m->shapes[i], shape, sizeof *shape) == 0) {
                m->current = i;
                err = RKNN_SUCC;
                break;
            }
    }
    fake_ctx_leave(s);
    return err;
}

static int is_int8_quantized(const mm_ctx* m) {
    return m->info.type == RKNN_INT8_MM_INT8_TO_INT32 || m->info.type == RKNN_INT8_MM_INT8_TO_INT8;
}

static int per_channel(const mm_ctx* m) {
    return m->info.B_quant_type == RKNN_QUANT_TYPE_PER_CHANNEL_SYM ||
           m->info.B_quant_type == RKNN_QUANT_TYPE_PER_CHANNEL_ASYM;
}

static int symmetric_b(const mm_ctx* m) {
    return m->info.B_quant_type == RKNN_QUANT_TYPE_PER_LAYER_SYM ||
           m->info.B_quant_type == RKNN_QUANT_TYPE_PER_CHANNEL_SYM;
}

static int store_quant(mm_ctx* m, const rknn_quant_params* p) {
    int t = tensor_of(p->name);
    if (t < 0) return fake_fail(RKNN_ERR_PARAM_INVALID, "quant params name no matmul tensor");
    int n = t == T_B && per_channel(m) ? max_n(m) : 1;
    if (p->scale_len != n || (p->zp_len != 0 && p->zp_len != n))
        return fake_fail(RKNN_ERR_PARAM_INVALID,
                         "quant params of %s: scale_len %d, zp_len %d; expected %d", p->name,
                         p->scale_len, p->zp_len, n);
    if (!p->scale || (p->zp_len && !p->zp))
        return unsafe(RKNN_ERR_PARAM_INVALID, "quant params with a NULL scale or zp array");
    for (int i = 0; i < n; i++)
        if (!(p->scale[i] > 0.0f) || !isfinite(p->scale[i]))
            return fake_fail(RKNN_ERR_PARAM_INVALID, "quant scale %d of %s is not positive", i,
                             p->name);
    /* How the real runtime treats a B zero point under a SYM type is undocumented (it may
     * ignore it), so the double refuses it: a binding must ask for the ASYM type. */
    for (int i = 0; t == T_B && symmetric_b(m) && i < p->zp_len; i++)
        if (p->zp[i] != 0)
            return fake_fail(RKNN_ERR_PARAM_INVALID,
                             "B zero point %d is %d but B_quant_type %d is symmetric", i,
                             (int)p->zp[i], (int)m->info.B_quant_type);
    int32_t zp0 = p->zp_len ? p->zp[0] : 0;
    m->b_bytes = 0; /* zero points are folded into the unpacked B */
    if (t == T_A) {
        m->a_scale = p->scale[0], m->a_zp = zp0;
    } else if (t == T_C) {
        m->c_scale = p->scale[0], m->c_zp = zp0;
    } else {
        for (int j = 0; j < max_n(m); j++) {
            m->b_scale[j] = p->scale[n == 1 ? 0 : j];
            m->b_zp[j] = p->zp_len ? p->zp[n == 1 ? 0 : j] : 0;
        }
    }
    return RKNN_SUCC;
}

int rknn_matmul_set_quant_params(rknn_matmul_ctx context, rknn_quant_params* params) {
    FAKE_ENTER(rknn_matmul_set_quant_params, err);
    fake_slot* s;
    mm_ctx* m = mm_enter(context, &s, &err);
    if (!m) return err;
    if (!params)
        err = unsafe(RKNN_ERR_PARAM_INVALID, "rknn_matmul_set_quant_params: NULL params");
    else if (!is_int8_quantized(m))
        err = fake_fail(RKNN_ERR_PARAM_INVALID,
                        "rknn_matmul_set_quant_params: only for INT8_MM_INT8_TO_INT8/INT32");
    else
        err = store_quant(m, params);
    fake_ctx_leave(s);
    return err;
}

/* Reports the scales and zero points of params->name (up to the lengths the caller gives,
 * which are then set to the real counts) and, in *scale, the scale of one C unit (A x B). */
int rknn_matmul_get_quant_params(rknn_matmul_ctx ctx, rknn_quant_params* params, float* scale) {
    FAKE_ENTER(rknn_matmul_get_quant_params, err);
    fake_slot* s;
    mm_ctx* m = mm_enter(ctx, &s, &err);
    if (!m) return err;
    int t = params ? tensor_of(params->name) : -1;
    if (!params) {
        err = unsafe(RKNN_ERR_PARAM_INVALID, "rknn_matmul_get_quant_params: NULL params");
    } else if (m->info.type != RKNN_INT8_MM_INT8_TO_INT32) {
        err = fake_fail(RKNN_ERR_PARAM_INVALID,
                        "rknn_matmul_get_quant_params: only for INT8_MM_INT8_TO_INT32");
    } else if (t < 0) {
        err = fake_fail(RKNN_ERR_PARAM_INVALID, "quant params name no matmul tensor");
    } else {
        int n = t == T_B && per_channel(m) ? max_n(m) : 1;
        const float* sc = t == T_A ? &m->a_scale : t == T_C ? &m->c_scale : m->b_scale;
        const int32_t* zp = t == T_A ? &m->a_zp : t == T_C ? &m->c_zp : m->b_zp;
        for (int i = 0; i < n && i < params->scale_len && params->scale; i++) params->scale[i] = sc[i];
        for (int i = 0; i < n && i < params->zp_len && params->zp; i++) params->zp[i] = zp[i];
        params->scale_len = params->zp_len = n;
        if (scale) *scale = m->a_scale * m->b_scale[0];
    }
    fake_ctx_leave(s);
    return err;
}

/* Element offsets of A(i, k), B(k, j) and C(i, j) in the bound buffers. */
static size_t a_index(const mm_ctx* m, int M, int K, int i, int k) {
    int sub = m->geo.a_sub_k;
    if (m->info.AC_layout == RKNN_MM_LAYOUT_NATIVE)
        return ((size_t)(k / sub) * (size_t)M + (size_t)i) * (size_t)sub + (size_t)(k % sub);
    return (size_t)i * (size_t)K + (size_t)k;
}

static size_t c_index(const mm_ctx* m, int M, int N, int i, int j) {
    if (m->info.AC_layout == RKNN_MM_LAYOUT_NATIVE)
        return ((size_t)(j / 4) * (size_t)M + (size_t)i) * 4u + (size_t)(j % 4);
    return (size_t)i * (size_t)N + (size_t)j;
}

/* Native B: K split in segments (RK3588 8192, RK3576 4096 rows), each one tiled as
 * (N / n_align, K_segment / k_align, n_align, k_align). */
static size_t b_native_index(const mm_geometry* g, int K, int N, int k, int j) {
    int seg = g->b_segment_k && K > g->b_segment_k ? g->b_segment_k : K;
    int s = k / seg, kk = k % seg;
    int k_seg = K - s * seg < seg ? K - s * seg : seg;
    size_t tile = ((size_t)(j / g->n_align) * (size_t)(k_seg / g->k_align) + (size_t)(kk / g->k_align));
    return (size_t)s * (size_t)seg * (size_t)N +
           (tile * (size_t)g->n_align + (size_t)(j % g->n_align)) * (size_t)g->k_align +
           (size_t)(kk % g->k_align);
}

static size_t b_index(const mm_ctx* m, int K, int N, int k, int j) {
    switch (m->info.B_layout) {
    case RKNN_MM_LAYOUT_NATIVE: return b_native_index(&m->geo, K, N, k, j);
    case RKNN_MM_LAYOUT_TP_NORM: return (size_t)j * (size_t)K + (size_t)k;
    default: return (size_t)k * (size_t)N + (size_t)j;
    }
}

static int8_t saturate_int8(long v) { return (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v); }

/* Unpacks B (K, N) of the current shape into m->b_cache as (N, K) rows; 0 or the error. */
static int unpack_b(mm_ctx* m, const uint8_t* B, int K, int N) {
    int fp16 = is_fp16_ab(m->info.type);
    size_t bytes = (size_t)K * (size_t)N * (fp16 ? 2u : 1u);
    if (m->b_bytes == bytes && m->b_k == K && m->b_n == N && memcmp(m->b_raw, B, bytes) == 0)
        return RKNN_SUCC;
    free(m->b_raw);
    free(m->b_cache);
    m->b_bytes = 0;
    m->b_raw = malloc(bytes);
    m->b_cache = malloc((size_t)K * (size_t)N * 4u);
    if (!m->b_raw || !m->b_cache)
        return fake_fail(RKNN_ERR_MALLOC_FAIL, "rknn_matmul_run: out of memory");
    memcpy(m->b_raw, B, bytes);
    int zp = m->info.type == RKNN_INT8_MM_INT8_TO_INT8;
    for (int k = 0; k < K; k++)
        for (int j = 0; j < N; j++) {
            size_t from = b_index(m, K, N, k, j), to = (size_t)j * K + k;
            if (fp16)
                ((float*)m->b_cache)[to] = fake_f16_to_f32(((const uint16_t*)B)[from]);
            else
                ((int32_t*)m->b_cache)[to] = ((const int8_t*)B)[from] - (zp ? m->b_zp[j] : 0);
        }
    m->b_bytes = bytes, m->b_k = K, m->b_n = N;
    return RKNN_SUCC;
}

/* The matmul of the current shape: rows of A unpacked to contiguous K vectors so the
 * inner loop is a plain dot product with a row of the unpacked B. */
static int compute(mm_ctx* m, const uint8_t* A, const uint8_t* B, uint8_t* C) {
    const rknn_matmul_shape* sh = &m->shapes[m->current];
    int M = sh->M, K = sh->K, N = sh->N;
    rknn_matmul_type type = m->info.type;
    int err = unpack_b(m, B, K, N);
    if (err) return err;
    if (is_fp16_ab(type)) {
        float* a = malloc((size_t)M * K * sizeof *a);
        if (!a) return fake_fail(RKNN_ERR_MALLOC_FAIL, "rknn_matmul_run: out of memory");
        const uint16_t* ha = (const uint16_t*)A;
        const float* b = m->b_cache;
        for (int i = 0; i < M; i++)
            for (int k = 0; k < K; k++) a[(size_t)i * K + k] = fake_f16_to_f32(ha[a_index(m, M, K, i, k)]);
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                const float *ra = a + (size_t)i * K, *rb = b + (size_t)j * K;
                float acc = 0.0f; /* fp16 x fp16 is exact in fp32; sums round in fp32 */
                for (int k = 0; k < K; k++) acc += ra[k] * rb[k];
                size_t at = c_index(m, M, N, i, j);
                if (type == RKNN_FLOAT16_MM_FLOAT16_TO_FLOAT32)
                    ((float*)C)[at] = acc;
                else
                    ((uint16_t*)C)[at] = fake_f32_to_f16(acc);
            }
        free(a);
        return RKNN_SUCC;
    }
    int32_t* a = malloc((size_t)M * K * sizeof *a);
    if (!a) return fake_fail(RKNN_ERR_MALLOC_FAIL, "rknn_matmul_run: out of memory");
    const int8_t* qa = (const int8_t*)A;
    const int32_t* b = m->b_cache;
    int quantized = type == RKNN_INT8_MM_INT8_TO_INT8;
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++)
            a[(size_t)i * K + k] = qa[a_index(m, M, K, i, k)] - (quantized ? m->a_zp : 0);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            const int32_t *ra = a + (size_t)i * K, *rb = b + (size_t)j * K;
            int32_t acc = 0; /* |acc| <= 255 * 255 * 10240 fits */
            for (int k = 0; k < K; k++) acc += ra[k] * rb[k];
            size_t at = c_index(m, M, N, i, j);
            if (!quantized) {
                ((int32_t*)C)[at] = acc;
            } else {
                /* Clamped first: lrintf of a value out of long's range is undefined, and
                 * anything beyond +-1e9 saturates the same way. */
                float v = (float)acc * m->a_scale * m->b_scale[j] / m->c_scale;
                v = v < -1e9f ? -1e9f : v > 1e9f ? 1e9f : v;
                ((int8_t*)C)[at] = saturate_int8(lrintf(v) + m->c_zp);
            }
        }
    free(a);
    return RKNN_SUCC;
}

int rknn_matmul_run(rknn_matmul_ctx ctx) {
    FAKE_ENTER(rknn_matmul_run, err);
    fake_slot* s;
    mm_ctx* m = mm_enter(ctx, &s, &err);
    if (!m) return err;
    for (int t = 0; t < T_COUNT && !err; t++) {
        const fake_binding* b = &m->bound[t];
        if (!b->mem)
            err = unsafe(RKNN_ERR_PARAM_INVALID, "rknn_matmul_run before A, B and C were bound");
        else if (!fake_binding_valid(b))
            err = unsafe(RKNN_ERR_PARAM_INVALID, "rknn_matmul_run: a bound mem was destroyed");
        else if (t != T_B && m->bound_shape[t] != m->current)
            err = unsafe(RKNN_ERR_PARAM_INVALID,
                         "rknn_matmul_run: A or C bound for another shape; call "
                         "rknn_matmul_set_io_mem after rknn_matmul_set_dynamic_shape");
    }
    if (!err) err = compute(m, m->bound[T_A].mem->data, m->bound[T_B].mem->data, m->bound[T_C].mem->data);
    fake_ctx_leave(s);
    return err;
}

int rknn_B_normal_layout_to_native_layout(void* B_input, void* B_output, int K, int N,
                                          rknn_matmul_info* info) {
    FAKE_ENTER(rknn_B_normal_layout_to_native_layout, err);
    if (!B_input || !B_output || !info)
        return unsafe(RKNN_ERR_PARAM_INVALID, "rknn_B_normal_layout_to_native_layout: NULL argument");
    mm_geometry g;
    err = check_info(info, &g);
    if (!err) err = check_shape(&g, 1, K, N);
    if (err) return err;
    size_t esize = is_fp16_ab(info->type) ? 2 : 1;
    const uint8_t* in = B_input;
    uint8_t* out = B_output;
    for (int k = 0; k < K; k++)
        for (int j = 0; j < N; j++)
            memcpy(out + b_native_index(&g, K, N, k, j) * esize,
                   in + ((size_t)k * (size_t)N + (size_t)j) * esize, esize);
    return RKNN_SUCC;
}
