/* Shared internals of the test-double librknnrt: model, contexts, mems, counters. */
#ifndef FAKE_INTERNAL_H
#define FAKE_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Only the rknn_* ABI and the fake_* control API leave the library (-fvisibility=hidden). */
#pragma GCC visibility push(default)
#include "rknn_api.h"
#include "fake_control.h"
#pragma GCC visibility pop

/* Every exported rknn_* function: rknn_api.h, then rknn_matmul_api.h. Each one opens with
 * FAKE_ENTER. */
#define FAKE_FUNCTIONS(X)                                                            \
    X(rknn_init) X(rknn_dup_context) X(rknn_destroy) X(rknn_query)                   \
    X(rknn_inputs_set) X(rknn_set_batch_core_num) X(rknn_set_core_mask) X(rknn_run)  \
    X(rknn_wait) X(rknn_outputs_get) X(rknn_outputs_release)                         \
    X(rknn_create_mem_from_phys) X(rknn_create_mem_from_fd)                          \
    X(rknn_create_mem_from_mb_blk) X(rknn_create_mem) X(rknn_create_mem2)            \
    X(rknn_destroy_mem) X(rknn_set_weight_mem) X(rknn_set_internal_mem)              \
    X(rknn_set_io_mem) X(rknn_set_input_shape) X(rknn_set_input_shapes)              \
    X(rknn_mem_sync)                                                                 \
    X(rknn_matmul_create) X(rknn_matmul_create_dynamic_shape) X(rknn_matmul_set_io_mem) \
    X(rknn_matmul_set_core_mask) X(rknn_matmul_set_quant_params)                     \
    X(rknn_matmul_get_quant_params) X(rknn_matmul_set_dynamic_shape)                 \
    X(rknn_matmul_run) X(rknn_matmul_destroy) X(rknn_B_normal_layout_to_native_layout)

/* The runtime release this build emulates (build.py passes it; its symbol set follows). */
#ifndef FAKE_SDK_VERSION
#define FAKE_SDK_VERSION "2.5.0"
#endif

#define FAKE_FN_ID(name) FN_##name,
enum fake_function { FAKE_FUNCTIONS(FAKE_FN_ID) FN_COUNT };
#undef FAKE_FN_ID

enum fake_counter_id {
    CNT_SIZE_MISMATCH,
    CNT_MIXED_API,
    CNT_CONCURRENT,
    CNT_BAD_POINTER,
    CNT_MATMUL_UNSAFE, /* counted by fake_matmul.c */
    CNT_SYNC_DIRECTION, /* rknn_mem_sync: TO_DEVICE on a bound output, FROM_DEVICE on an input */
    CNT_SYNC_ORDER,     /* an input not synced TO_DEVICE before a run; an output synced early */
    CNT_COUNT
};

typedef struct {
    atomic_int nth;  /* > 0: calls left until the injected failure */
    atomic_int code;
} fake_fault;

extern atomic_llong fake_calls[FN_COUNT];
extern atomic_llong fake_counters[CNT_COUNT];
extern fake_fault fake_faults[FN_COUNT];
extern atomic_llong fake_live_ctx, fake_live_mem, fake_live_out;
extern atomic_llong fake_weight_bytes_total, fake_weight_bytes_live;
extern atomic_uint fake_init_flags;
extern atomic_uint fake_delay_us, fake_jitter_us;
extern atomic_int fake_in_flight, fake_max_in_flight;
/* Time contexts spent between two runs (fake_run_gaps) and in runs (fake_run_times), counted
 * from fake_gap_epoch_ns on. */
extern atomic_llong fake_gap_ns, fake_gap_count, fake_gap_epoch_ns, fake_run_ns, fake_run_count;
/* Keeps a counted run's return (fake_run_ends). */
void fake_record_run_end(rknn_context context, int64_t end_ns);
int64_t fake_now_ns(void);
extern atomic_int fake_non_dmabuf_ok; /* fake_allow_non_dmabuf */

/* Counts the call and returns the injected failure code, or 0. */
static inline int fake_enter_function(enum fake_function fn) {
    atomic_fetch_add_explicit(&fake_calls[fn], 1, memory_order_relaxed);
    if (atomic_load_explicit(&fake_faults[fn].nth, memory_order_relaxed) <= 0) return 0;
    if (atomic_fetch_sub(&fake_faults[fn].nth, 1) != 1) return 0;
    return atomic_load(&fake_faults[fn].code);
}

/* Opens every exported rknn_* function: declares `int err` (0 past this line), counts the
 * call and, when a fault was injected for it (fake_inject), records why and returns `failed`:
 * `err` (the injected code) from functions returning a code, NULL from those returning a
 * pointer. Not wrapped in do { } while (0): the function goes on using `err`. */
#define FAKE_ENTER(name, failed)                  \
    int err = fake_enter_function(FN_##name);     \
    if (err) return fake_fail(err, "injected failure of " #name), (failed)

static inline void fake_count(enum fake_counter_id id) {
    atomic_fetch_add_explicit(&fake_counters[id], 1, memory_order_relaxed);
}

/* Records why the calling thread's call failed and returns code. */
int fake_fail(int code, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- model (fake_model.c) ---- */

enum fake_activation { ACT_IDENTITY, ACT_RELU, ACT_SIGMOID, ACT_TANH, ACT_SOFTMAX, ACT_COUNT };

typedef struct {
    char name[RKNN_MAX_NAME_LEN];
    uint32_t width;
    uint32_t offset; /* first column in the concatenated input / last-layer output */
    float scale;
    int32_t zp;
    /* An image-like input (format version 2): n_dims 4, width = c * h * w. The plain attrs
     * describe it in `fmt` (NCHW or NHWC); the native ones in `native_fmt` (NCHW, NHWC or
     * NC1HWC2 with channel blocks of c2) with rows of w_stride >= w pixels. */
    uint32_t n_dims;
    uint32_t c, h, w, fmt, native_fmt, w_stride, c2;
} fake_tensor;

/* How a 4-D tensor lies in a buffer, per batch row (fake_layout.c). */
typedef struct {
    uint32_t fmt, c, h, w, w_stride, c2;
} fake_layout;

/* The plain (logical, packed) and native layouts of a 4-D tensor. */
fake_layout fake_plain_layout(const fake_tensor* t);
fake_layout fake_native_layout(const fake_tensor* t);
/* Elements one batch row takes in a buffer of layout l (padding included). */
size_t fake_layout_elems(const fake_layout* l);
/* Copies `batch` rows of esize-byte elements from src (laid out as l) into dst, packed in
 * the tensor's plain order; a 2-D tensor is copied as is. */
void fake_gather(const fake_tensor* t, const fake_layout* l, size_t esize, uint32_t batch,
                 const uint8_t* src, uint8_t* dst);

typedef struct {
    uint32_t n_in, n_out, activation;
    float* weight; /* (n_in, n_out) row-major */
    float* bias;
} fake_layer;

typedef struct fake_model {
    atomic_int refs;
    struct fake_model* weights_of; /* whose weight arrays these are (RKNN_FLAG_SHARE_WEIGHT_MEM);
                                      NULL: its own. Holds a reference to it. */
    rknn_tensor_type dtype;
    uint32_t n_inputs, n_outputs, n_layers, n_batches;
    uint32_t* batches;
    fake_tensor* inputs;
    fake_tensor* outputs;
    fake_layer* layers;
    uint32_t in_features, out_features, max_width, max_batch;
    uint64_t weight_bytes;
    char custom[1024];
} fake_model;

/* Parses the fake model format; NULL (with fake_fail set) when the bytes are not one.
 * With `share`, the layers use share's weight arrays (same layer shapes and dtype required)
 * and the weights in `data` are skipped: nothing is allocated for them. */
fake_model* fake_model_parse(const uint8_t* data, size_t size, fake_model* share);
void fake_model_unref(fake_model* m);
int fake_model_has_batch(const fake_model* m, uint32_t batch);

/* Computes all layers for `batch` rows of x (batch, in_features) into y (batch, out_features).
 * a, b: scratch of max_batch * max_width floats; acc: max_width doubles. */
void fake_forward(const fake_model* m, uint32_t batch, const float* x, float* y, float* a,
                  float* b, double* acc);

/* ---- conversions (fake_convert.c) ---- */

uint16_t fake_f32_to_f16(float f);
float fake_f16_to_f32(uint16_t h);
int8_t fake_quantize(float x, float scale, int32_t zp);
size_t fake_type_size(rknn_tensor_type t); /* 0 for types the fake does not store */
/* Converts n values of type src into the tensor's native type (float32, float16 or
 * quantized int8); int8/uint8 sources are values, quantized like float ones. */
void fake_to_native(rknn_tensor_type native, const fake_tensor* t, rknn_tensor_type src,
                    const void* in, void* out, size_t n);
/* Converts n native values into dst type (float32 or the native type itself). */
void fake_from_native(rknn_tensor_type native, const fake_tensor* t, rknn_tensor_type dst,
                      const void* in, void* out, size_t n);
float fake_native_value(rknn_tensor_type native, const fake_tensor* t, const void* in, size_t i);

/* ---- contexts (fake_context.c) ---- */

typedef struct fake_mem fake_mem;

typedef struct {
    fake_mem* mem;   /* NULL: not bound */
    uint32_t serial; /* mem->serial when bound: a destroyed mem no longer matches */
    rknn_tensor_type type;
    fake_layout layout; /* 4-D inputs: the layout the attr given to rknn_set_io_mem asked for */
} fake_binding;

enum fake_api_mode { MODE_NONE, MODE_GENERAL, MODE_ZERO_COPY };

typedef struct {
    fake_model* model;
    uint32_t flags;
    uint32_t batch;
    enum fake_api_mode mode;
    int has_run;
    uint8_t** in_native;  /* per input: max_batch * width native values */
    uint8_t* in_set;
    uint8_t** out_native; /* per output */
    fake_binding* in_bind;
    fake_binding* out_bind;
    float *x, *y, *scratch_a, *scratch_b;
    uint8_t* gather; /* one input in plain order: max_batch * in_features * 4 bytes */
    double* acc;
    void** out_allocs; /* buffers handed out by rknn_outputs_get, not yet released */
    uint32_t n_allocs, cap_allocs;
    int64_t last_run_us;
    int64_t last_run_end_ns; /* CLOCK_MONOTONIC when its last rknn_run returned, 0: none */
    char perf_detail[512];
} fake_context;

typedef struct {
    atomic_uint gen;   /* generation of the live context, 0 when free */
    atomic_int busy;   /* threads inside the context right now */
    atomic_uint core_mask;
    uint32_t next_gen;
    fake_context* ctx;
} fake_slot;

/* Enters a context for one call: NULL with *err set when the handle is not live or
 * another thread is inside it. Pair with fake_ctx_leave. */
fake_context* fake_ctx_enter(rknn_context handle, fake_slot** slot, int* err);
void fake_ctx_leave(fake_slot* slot);
/* Like fake_ctx_enter, but refuses (RKNN_ERR_CTX_INVALID) a context without a model. */
fake_context* fake_model_ctx_enter(rknn_context handle, fake_slot** slot, int* err);
/* The slot of a live handle (no entry), or NULL. */
fake_slot* fake_slot_of(rknn_context handle);
/* A live context without a model (e.g. a matmul context): the rknn_create_mem*,
 * rknn_destroy_mem, rknn_mem_sync and core mask calls accept its handle, the model calls
 * refuse it. Returns the handle, or 0 with fake_fail set (RKNN_ERR_MALLOC_FAIL). */
rknn_context fake_ctx_open(void);
/* Ends a context opened by fake_ctx_open; 0 or an error code (not live, in use). */
int fake_ctx_close(rknn_context handle);

/* 0, or the error rknn_inputs_set gives for an input of this type (fake_io.c). */
int fake_check_input_type(const fake_model* m, rknn_tensor_type type, uint32_t index);
/* Forgets what rknn_inputs_set last received (fake_reset). */
void fake_reset_inputs(void);
/* Counts a general/zero-copy mix on one context and returns the error. */
int fake_mixed(const char* what);

/* ---- memory (fake_mem.c) ---- */

struct fake_mem {
    rknn_tensor_mem pub; /* first: the caller's rknn_tensor_mem* is the record's address */
    atomic_uint serial;  /* odd while alive */
    rknn_context owner;
    uint8_t* data;
    uint64_t capacity;
    void* alloc;         /* freed at destroy (inside allocations) */
    void* map;           /* munmapped at destroy (fd mems) */
    size_t map_len;
    fake_mem* next_all;
    fake_mem* next_free;
    /* Cache maintenance as a board needs it (changed only inside its context):
     * the last rknn_mem_sync mode (0: none), syncs per direction, whether the CPU's writes
     * were flushed since a run last read the mem, whether a run wrote it since the CPU
     * last invalidated its cache. */
    int last_sync;
    long long syncs_to_device, syncs_from_device;
    int flushed, written;
};

/* The live mem record behind a caller's pointer owned by ctx, or NULL with *err set. */
fake_mem* fake_mem_lookup(rknn_context ctx, const rknn_tensor_mem* mem, int* err);

static inline int fake_binding_valid(const fake_binding* b) {
    return b->mem && atomic_load_explicit(&b->mem->serial, memory_order_acquire) == b->serial;
}

#endif
