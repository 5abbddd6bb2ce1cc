/* The general IO path (rknn_inputs_set, rknn_outputs_get/release), rknn_run and rknn_wait. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake_internal.h"

int fake_check_input_type(const fake_model* m, rknn_tensor_type type, uint32_t index) {
    /* The user guide's table of input types (1.5.2, 4.4.5.1, Table 4-1): int8 models take
     * int8/uint8/float32, float16 models uint8/float16/float32. */
    switch (type) {
    case RKNN_TENSOR_FLOAT32:
    case RKNN_TENSOR_UINT8: return RKNN_SUCC;
    case RKNN_TENSOR_FLOAT16:
        if (m->dtype != RKNN_TENSOR_INT8) return RKNN_SUCC;
        break;
    case RKNN_TENSOR_INT8:
        if (m->dtype == RKNN_TENSOR_INT8) return RKNN_SUCC;
        break;
    case RKNN_TENSOR_INT32:
    case RKNN_TENSOR_INT64:
        return fake_fail(RKNN_ERR_FAIL,
                         "Normalize does not support for this data type (input %u, type %d)",
                         index, (int)type);
    default: break;
    }
    return fake_fail(RKNN_ERR_PARAM_INVALID, "input %u: type %d is not supported for this model",
                     index, (int)type);
}

int fake_mixed(const char* what) {
    fake_count(CNT_MIXED_API);
    return fake_fail(RKNN_ERR_FAIL,
                     "%s: the general (rknn_inputs_set/rknn_outputs_get) and zero-copy "
                     "(rknn_set_io_mem) APIs must not be mixed on one context",
                     what);
}

static int bad_pointer(const char* what) {
    fake_count(CNT_BAD_POINTER);
    return fake_fail(RKNN_ERR_PARAM_INVALID, "%s", what);
}

/* What the last rknn_inputs_set received per input index, for tests to see whether an input
 * arrived in the caller's own buffer and type (no hidden copy). */
#define RECORDED_INPUTS 64
static struct {
    atomic_llong type, size, buf, pass_through, fmt;
} last_inputs[RECORDED_INPUTS];

void fake_reset_inputs(void) {
    for (int i = 0; i < RECORDED_INPUTS; i++) {
        atomic_store(&last_inputs[i].type, -1);
        atomic_store(&last_inputs[i].size, -1);
        atomic_store(&last_inputs[i].buf, -1);
        atomic_store(&last_inputs[i].pass_through, -1);
        atomic_store(&last_inputs[i].fmt, -1);
    }
}

long long fake_last_input(uint32_t index, const char* field) {
    if (index >= RECORDED_INPUTS || !field) return -1;
    if (strcmp(field, "type") == 0) return atomic_load(&last_inputs[index].type);
    if (strcmp(field, "size") == 0) return atomic_load(&last_inputs[index].size);
    if (strcmp(field, "buf") == 0) return atomic_load(&last_inputs[index].buf);
    if (strcmp(field, "pass_through") == 0) return atomic_load(&last_inputs[index].pass_through);
    if (strcmp(field, "fmt") == 0) return atomic_load(&last_inputs[index].fmt);
    return -1;
}

static void record_input(const rknn_input* in) {
    if (in->index >= RECORDED_INPUTS) return;
    atomic_store_explicit(&last_inputs[in->index].type, in->type, memory_order_relaxed);
    atomic_store_explicit(&last_inputs[in->index].size, in->size, memory_order_relaxed);
    atomic_store_explicit(&last_inputs[in->index].buf, (long long)(uintptr_t)in->buf,
                          memory_order_relaxed);
    atomic_store_explicit(&last_inputs[in->index].pass_through, in->pass_through,
                          memory_order_relaxed);
    atomic_store_explicit(&last_inputs[in->index].fmt, in->fmt, memory_order_relaxed);
}

/* The layout of a 4-D input's buffer in rknn_inputs_set: native bytes (pass_through) lie in
 * the native layout; converted ones are packed in the fmt the caller names (NCHW or NHWC;
 * anything else is taken as the plain one). */
static fake_layout given_layout(const fake_tensor* t, const rknn_input* in) {
    if (in->pass_through) return fake_native_layout(t);
    fake_layout l = fake_plain_layout(t);
    if (in->fmt == RKNN_TENSOR_NCHW || in->fmt == RKNN_TENSOR_NHWC) l.fmt = in->fmt;
    return l;
}

static int set_inputs(fake_context* c, uint32_t n, const rknn_input* inputs) {
    const fake_model* m = c->model;
    if (c->mode == MODE_ZERO_COPY) return fake_mixed("rknn_inputs_set");
    if (!inputs) return bad_pointer("rknn_inputs_set: NULL inputs");
    if (n == 0 || n > m->n_inputs)
        return fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_inputs_set: %u inputs, the model has %u",
                         n, m->n_inputs);
    for (uint32_t k = 0; k < n; k++) {
        const rknn_input* in = &inputs[k];
        if (in->index >= m->n_inputs)
            return fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_inputs_set: index %u, the model has %u",
                             in->index, m->n_inputs);
        if (!in->buf) return bad_pointer("rknn_inputs_set: NULL buf");
        record_input(in);
        rknn_tensor_type src = in->pass_through ? m->dtype : in->type;
        int err = in->pass_through ? RKNN_SUCC : fake_check_input_type(m, src, in->index);
        if (err) return err;
        const fake_tensor* t = &m->inputs[in->index];
        fake_layout layout = given_layout(t, in);
        size_t elems = (size_t)c->batch * t->width;
        size_t need = (size_t)c->batch * (t->n_dims == 4 ? fake_layout_elems(&layout) : t->width) *
                      fake_type_size(src);
        if (in->size != need) {
            /* Larger: silently truncated, as the real runtime does. */
            fake_count(CNT_SIZE_MISMATCH);
            if (in->size < need)
                return fake_fail(RKNN_ERR_PARAM_INVALID,
                                 "rknn_inputs_set: input %u size %u is smaller than %zu bytes",
                                 in->index, in->size, need);
        }
        const uint8_t* buf = in->buf;
        if (t->n_dims == 4) {
            fake_gather(t, &layout, fake_type_size(src), c->batch, buf, c->gather);
            buf = c->gather;
        }
        if (in->pass_through)
            memcpy(c->in_native[in->index], buf, elems * fake_type_size(src));
        else
            fake_to_native(m->dtype, t, src, buf, c->in_native[in->index], elems);
        c->in_set[in->index] = 1;
    }
    c->mode = MODE_GENERAL;
    return RKNN_SUCC;
}

int rknn_inputs_set(rknn_context context, uint32_t n_inputs, rknn_input inputs[]) {
    FAKE_ENTER(rknn_inputs_set, err);
    fake_slot* s;
    fake_context* c = fake_model_ctx_enter(context, &s, &err);
    if (!c) return err;
    err = set_inputs(c, n_inputs, inputs);
    fake_ctx_leave(s);
    return err;
}

/* Checks a zero-copy binding for the current shape; 0 or an error code. */
static int check_binding(const fake_context* c, const fake_binding* b, const fake_tensor* t,
                         const char* kind, uint32_t index) {
    if (!b->mem)
        return fake_fail(kind[0] == 'i' ? RKNN_ERR_INPUT_INVALID : RKNN_ERR_OUTPUT_INVALID,
                         "rknn_run: no memory bound to %s %u (rknn_set_io_mem)", kind, index);
    if (!fake_binding_valid(b)) {
        fake_count(CNT_BAD_POINTER);
        return fake_fail(RKNN_ERR_PARAM_INVALID,
                         "rknn_run: the memory bound to %s %u was destroyed", kind, index);
    }
    size_t need = (size_t)c->batch * t->width * fake_type_size(b->type);
    if (b->mem->capacity < need) {
        fake_count(CNT_SIZE_MISMATCH);
        return fake_fail(RKNN_ERR_PARAM_INVALID,
                         "rknn_run: memory bound to %s %u holds %llu bytes, the current shape "
                         "needs %zu: bind again with the CURRENT attrs",
                         kind, index, (unsigned long long)b->mem->capacity, need);
    }
    return RKNN_SUCC;
}

static int run_checks(const fake_context* c) {
    const fake_model* m = c->model;
    int err;
    switch (c->mode) {
    case MODE_NONE:
        return fake_fail(RKNN_ERR_INPUT_INVALID,
                         "rknn_run: no input set (rknn_inputs_set or rknn_set_io_mem)");
    case MODE_GENERAL:
        for (uint32_t i = 0; i < m->n_inputs; i++)
            if (!c->in_set[i])
                return fake_fail(RKNN_ERR_INPUT_INVALID, "rknn_run: input %u was never set", i);
        return RKNN_SUCC;
    case MODE_ZERO_COPY:
        for (uint32_t i = 0; i < m->n_inputs; i++)
            if ((err = check_binding(c, &c->in_bind[i], &m->inputs[i], "input", i))) return err;
        for (uint32_t i = 0; i < m->n_outputs; i++)
            if ((err = check_binding(c, &c->out_bind[i], &m->outputs[i], "output", i))) return err;
        return RKNN_SUCC;
    }
    return RKNN_ERR_FAIL;
}

/* Zero-copy cache maintenance around a run: every input must have been synced TO_DEVICE
 * since a run last read it, else the NPU would read stale DDR on a board with cached memory;
 * outputs are marked written until synced FROM_DEVICE. */
static void track_syncs(fake_context* c) {
    const fake_model* m = c->model;
#ifdef FAKE_WITHOUT_MEM_SYNC
    /* A release without rknn_mem_sync (before 1.6.0) keeps its own buffers coherent in
     * rknn_run: its callers cannot sync, and Rockchip's demos never do. */
    for (uint32_t o = 0; o < m->n_outputs; o++) c->out_bind[o].mem->written = 0;
    return;
#endif
    for (uint32_t i = 0; i < m->n_inputs; i++) {
        fake_mem* r = c->in_bind[i].mem;
        if (!r->flushed) fake_count(CNT_SYNC_ORDER);
        r->flushed = 0;
    }
    for (uint32_t o = 0; o < m->n_outputs; o++) c->out_bind[o].mem->written = 1;
}

static void compute(fake_context* c) {
    const fake_model* m = c->model;
    const uint32_t batch = c->batch;
    const size_t esize = fake_type_size(m->dtype);
    for (uint32_t i = 0; i < m->n_inputs; i++) {
        const fake_tensor* t = &m->inputs[i];
        const fake_binding* b = &c->in_bind[i];
        size_t elems = (size_t)batch * t->width;
        if (c->mode == MODE_ZERO_COPY) {
            const uint8_t* data = b->mem->data;
            if (t->n_dims == 4) {
                fake_gather(t, &b->layout, fake_type_size(b->type), batch, data, c->gather);
                data = c->gather;
            }
            /* Memory bound with the native type holds native bytes: no conversion. */
            if (b->type == m->dtype)
                memcpy(c->in_native[i], data, elems * esize);
            else
                fake_to_native(m->dtype, t, b->type, data, c->in_native[i], elems);
        }
        for (uint32_t r = 0; r < batch; r++)
            for (uint32_t k = 0; k < t->width; k++)
                c->x[(size_t)r * m->in_features + t->offset + k] =
                    fake_native_value(m->dtype, t, c->in_native[i], (size_t)r * t->width + k);
    }
    fake_forward(m, batch, c->x, c->y, c->scratch_a, c->scratch_b, c->acc);
    for (uint32_t o = 0; o < m->n_outputs; o++) {
        const fake_tensor* t = &m->outputs[o];
        for (uint32_t r = 0; r < batch; r++)
            fake_to_native(m->dtype, t, RKNN_TENSOR_FLOAT32,
                           c->y + (size_t)r * m->out_features + t->offset,
                           c->out_native[o] + (size_t)r * t->width * esize, t->width);
        const fake_binding* b = &c->out_bind[o];
        if (c->mode == MODE_ZERO_COPY)
            fake_from_native(m->dtype, t, b->type, c->out_native[o], b->mem->data,
                             (size_t)batch * t->width);
    }
}

static _Thread_local uint64_t jitter_state;

static uint64_t next_random(void) {
    if (!jitter_state) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        jitter_state = ((uint64_t)(uintptr_t)&jitter_state ^ (uint64_t)now.tv_nsec) | 1u;
    }
    jitter_state ^= jitter_state << 13;
    jitter_state ^= jitter_state >> 7;
    jitter_state ^= jitter_state << 17;
    return jitter_state;
}

static void run_delay(uint32_t us, uint32_t jitter) {
    if (!us && !jitter) return;
    uint64_t total = us + (jitter ? next_random() % ((uint64_t)jitter + 1) : 0);
    struct timespec ts = {(time_t)(total / 1000000u), (long)(total % 1000000u) * 1000L};
    /* A job's end reaches a real runtime as the NPU's interrupt, at the end. A plain sleep
     * may be deferred by the thread's timer slack (50 us by default) to batch wake-ups, by
     * more when the process has fewer other timers firing: that noise is the kernel's, not
     * the runtime's under test, so the sleep is made precise and the slack put back. */
    int slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    if (slack > 0) prctl(PR_SET_TIMERSLACK, (unsigned long)slack, 0, 0, 0);
}

int rknn_run(rknn_context context, rknn_run_extend* extend) {
    (void)extend; /* declared but not implemented by the real runtime either */
    FAKE_ENTER(rknn_run, err);
    fake_slot* s;
    fake_context* c = fake_model_ctx_enter(context, &s, &err);
    if (!c) return err;
    int64_t entered = fake_now_ns(), epoch = atomic_load(&fake_gap_epoch_ns);
    int counted = entered > epoch;
    if (c->last_run_end_ns > epoch) {
        atomic_fetch_add(&fake_gap_ns, entered - c->last_run_end_ns);
        atomic_fetch_add(&fake_gap_count, 1);
    }
    /* Read before the run counts as in flight: a test that sees it in flight can change the
     * delay for the next runs without changing this one's. */
    uint32_t us = atomic_load(&fake_delay_us), jitter = atomic_load(&fake_jitter_us);
    int in_flight = atomic_fetch_add(&fake_in_flight, 1) + 1;
    int seen = atomic_load(&fake_max_in_flight);
    while (in_flight > seen && !atomic_compare_exchange_weak(&fake_max_in_flight, &seen, in_flight)) {
    }
    run_delay(us, jitter);
    err = run_checks(c);
    if (!err) {
        if (c->mode == MODE_ZERO_COPY) track_syncs(c);
        compute(c);
        c->has_run = 1;
        if (c->flags & RKNN_FLAG_COLLECT_PERF_MASK)
            c->last_run_us = (fake_now_ns() - entered) / 1000;
    }
    atomic_fetch_sub(&fake_in_flight, 1);
    c->last_run_end_ns = fake_now_ns();
    if (counted) {
        atomic_fetch_add(&fake_run_ns, c->last_run_end_ns - entered);
        atomic_fetch_add(&fake_run_count, 1);
        fake_record_run_end(context, c->last_run_end_ns);
    }
    fake_ctx_leave(s);
    return err;
}

int rknn_wait(rknn_context context, rknn_run_extend* extend) {
    (void)extend;
    FAKE_ENTER(rknn_wait, err);
    fake_slot* s;
    if (!fake_model_ctx_enter(context, &s, &err)) return err;
    fake_ctx_leave(s);
    return fake_fail(RKNN_ERR_FAIL, "rknn_wait is not implemented by the runtime");
}

static int track_alloc(fake_context* c, void* p) {
    if (c->n_allocs == c->cap_allocs) {
        uint32_t cap = c->cap_allocs ? 2 * c->cap_allocs : 16;
        void** grown = realloc(c->out_allocs, cap * sizeof *grown);
        if (!grown) return 0;
        c->out_allocs = grown;
        c->cap_allocs = cap;
    }
    c->out_allocs[c->n_allocs++] = p;
    return 1;
}

static int untrack_alloc(fake_context* c, const void* p) {
    for (uint32_t i = c->n_allocs; i-- > 0;)
        if (c->out_allocs[i] == p) {
            c->out_allocs[i] = c->out_allocs[--c->n_allocs];
            return 1;
        }
    return 0;
}

static int get_one(fake_context* c, rknn_output* o) {
    const fake_model* m = c->model;
    if (o->index >= m->n_outputs)
        return fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_outputs_get: index %u, the model has %u",
                         o->index, m->n_outputs);
    const fake_tensor* t = &m->outputs[o->index];
    rknn_tensor_type type = o->want_float ? RKNN_TENSOR_FLOAT32 : m->dtype;
    size_t elems = (size_t)c->batch * t->width, need = elems * fake_type_size(type);
    if (o->is_prealloc) {
        if (!o->buf) return bad_pointer("rknn_outputs_get: is_prealloc with NULL buf");
        if (o->size < need) {
            fake_count(CNT_SIZE_MISMATCH);
            return fake_fail(RKNN_ERR_PARAM_INVALID,
                             "rknn_outputs_get: output %u buffer of %u bytes, needs %zu",
                             o->index, o->size, need);
        }
        fake_from_native(m->dtype, t, type, c->out_native[o->index], o->buf, elems);
        return RKNN_SUCC;
    }
    void* p = malloc(need);
    if (!p || !track_alloc(c, p)) {
        free(p);
        return fake_fail(RKNN_ERR_MALLOC_FAIL, "rknn_outputs_get: out of memory");
    }
    fake_from_native(m->dtype, t, type, c->out_native[o->index], p, elems);
    o->buf = p;
    o->size = (uint32_t)need;
    atomic_fetch_add(&fake_live_out, 1);
    return RKNN_SUCC;
}

static int get_outputs(fake_context* c, uint32_t n, rknn_output* outputs) {
    const fake_model* m = c->model;
    if (c->mode == MODE_ZERO_COPY) return fake_mixed("rknn_outputs_get");
    if (!outputs) return bad_pointer("rknn_outputs_get: NULL outputs");
    if (n == 0 || n > m->n_outputs)
        return fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_outputs_get: %u outputs, the model has %u",
                         n, m->n_outputs);
    if (!c->has_run)
        return fake_fail(RKNN_ERR_OUTPUT_INVALID, "rknn_outputs_get: rknn_run has not run yet");
    for (uint32_t k = 0; k < n; k++) {
        int err = get_one(c, &outputs[k]);
        if (!err) continue;
        /* All or nothing: free what this call handed out. */
        for (uint32_t j = 0; j < k; j++)
            if (!outputs[j].is_prealloc && untrack_alloc(c, outputs[j].buf)) {
                free(outputs[j].buf);
                outputs[j].buf = NULL;
                atomic_fetch_sub(&fake_live_out, 1);
            }
        return err;
    }
    c->mode = MODE_GENERAL;
    return RKNN_SUCC;
}

int rknn_outputs_get(rknn_context context, uint32_t n_outputs, rknn_output outputs[],
                     rknn_output_extend* extend) {
    (void)extend;
    FAKE_ENTER(rknn_outputs_get, err);
    fake_slot* s;
    fake_context* c = fake_model_ctx_enter(context, &s, &err);
    if (!c) return err;
    err = get_outputs(c, n_outputs, outputs);
    fake_ctx_leave(s);
    return err;
}

static int release_outputs(fake_context* c, uint32_t n, rknn_output* outputs) {
    if (c->mode == MODE_ZERO_COPY) return fake_mixed("rknn_outputs_release");
    if (!outputs) return bad_pointer("rknn_outputs_release: NULL outputs");
    if (n == 0 || n > c->model->n_outputs)
        return fake_fail(RKNN_ERR_PARAM_INVALID,
                         "rknn_outputs_release: %u outputs, the model has %u", n,
                         c->model->n_outputs);
    int err = RKNN_SUCC;
    for (uint32_t k = 0; k < n; k++) {
        rknn_output* o = &outputs[k];
        /* NULL: never handed out (e.g. rknn_outputs_get failed) or already released. */
        if (o->is_prealloc || !o->buf) continue;
        if (!untrack_alloc(c, o->buf)) {
            err = bad_pointer("rknn_outputs_release: buf was not returned by rknn_outputs_get "
                              "on this context");
            continue;
        }
        free(o->buf);
        o->buf = NULL;
        atomic_fetch_sub(&fake_live_out, 1);
    }
    return err;
}

int rknn_outputs_release(rknn_context context, uint32_t n_ouputs, rknn_output outputs[]) {
    FAKE_ENTER(rknn_outputs_release, err);
    fake_slot* s;
    fake_context* c = fake_model_ctx_enter(context, &s, &err);
    if (!c) return err;
    err = release_outputs(c, n_ouputs, outputs);
    fake_ctx_leave(s);
    return err;
}
