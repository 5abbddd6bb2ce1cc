/* Context handles and lifecycle: init, dup, destroy, core masks, input shapes. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_internal.h"

/* Slots are static and never freed, so a stale or racing handle can be checked
 * without touching freed memory: handle = generation << 32 | (slot index + 1). */
#define MAX_CONTEXTS 4096u
static fake_slot slots[MAX_CONTEXTS];
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;

fake_slot* fake_slot_of(rknn_context handle) {
    uint64_t index = handle & 0xffffffffu;
    uint32_t gen = (uint32_t)(handle >> 32);
    if (index == 0 || index > MAX_CONTEXTS || gen == 0) return NULL;
    fake_slot* s = &slots[index - 1];
    return atomic_load(&s->gen) == gen ? s : NULL;
}

fake_context* fake_ctx_enter(rknn_context handle, fake_slot** slot, int* err) {
    uint64_t index = handle & 0xffffffffu;
    uint32_t gen = (uint32_t)(handle >> 32);
    if (index == 0 || index > MAX_CONTEXTS || gen == 0) {
        fake_count(CNT_BAD_POINTER);
        *err = fake_fail(RKNN_ERR_CTX_INVALID, "context %#llx is not a context handle",
                         (unsigned long long)handle);
        return NULL;
    }
    fake_slot* s = &slots[index - 1];
    if (atomic_fetch_add(&s->busy, 1) != 0) {
        atomic_fetch_sub(&s->busy, 1);
        if (atomic_load(&s->gen) == gen) {
            fake_count(CNT_CONCURRENT);
            *err = fake_fail(RKNN_ERR_FAIL,
                             "context %#llx is in use by another thread: use one context per "
                             "thread (rknn_dup_context)",
                             (unsigned long long)handle);
            return NULL;
        }
    } else if (atomic_load(&s->gen) == gen) {
        *slot = s;
        return s->ctx;
    } else {
        atomic_fetch_sub(&s->busy, 1);
    }
    fake_count(CNT_BAD_POINTER);
    *err = fake_fail(RKNN_ERR_CTX_INVALID, "context %#llx was destroyed",
                     (unsigned long long)handle);
    return NULL;
}

fake_context* fake_model_ctx_enter(rknn_context handle, fake_slot** slot, int* err) {
    fake_context* c = fake_ctx_enter(handle, slot, err);
    if (c && !c->model) {
        fake_ctx_leave(*slot);
        *err = fake_fail(RKNN_ERR_CTX_INVALID, "context %#llx has no model (a matmul context?)",
                         (unsigned long long)handle);
        return NULL;
    }
    return c;
}

void fake_ctx_leave(fake_slot* slot) {
    atomic_fetch_sub_explicit(&slot->busy, 1, memory_order_release);
}

static void context_free(fake_context* c) {
    if (!c) return;
    const fake_model* m = c->model;
    for (uint32_t i = 0; m && i < m->n_inputs && c->in_native; i++) free(c->in_native[i]);
    for (uint32_t i = 0; m && i < m->n_outputs && c->out_native; i++) free(c->out_native[i]);
    free(c->in_native);
    free(c->out_native);
    free(c->in_set);
    free(c->in_bind);
    free(c->out_bind);
    free(c->x);
    free(c->y);
    free(c->scratch_a);
    free(c->scratch_b);
    free(c->acc);
    free(c->gather);
    /* Unreleased outputs stay allocated and counted live: the leak must stay visible. */
    free(c->out_allocs);
    fake_model_unref(c->model);
    free(c);
}

/* Takes over one reference to m. */
static fake_context* context_new(fake_model* m, uint32_t flags) {
    fake_context* c = calloc(1, sizeof *c);
    if (!c) {
        fake_model_unref(m);
        return NULL;
    }
    c->model = m;
    c->flags = flags;
    c->batch = m->batches[0];
    size_t esize = fake_type_size(m->dtype), rows = m->max_batch;
    c->in_native = calloc(m->n_inputs, sizeof *c->in_native);
    c->out_native = calloc(m->n_outputs, sizeof *c->out_native);
    c->in_set = calloc(m->n_inputs, 1);
    c->in_bind = calloc(m->n_inputs, sizeof *c->in_bind);
    c->out_bind = calloc(m->n_outputs, sizeof *c->out_bind);
    c->x = malloc(rows * m->in_features * sizeof(float));
    c->y = malloc(rows * m->out_features * sizeof(float));
    c->scratch_a = malloc(rows * m->max_width * sizeof(float));
    c->scratch_b = malloc(rows * m->max_width * sizeof(float));
    c->acc = malloc(m->max_width * sizeof(double));
    c->gather = malloc(rows * m->in_features * sizeof(float));
    int ok = c->in_native && c->out_native && c->in_set && c->in_bind && c->out_bind && c->x &&
             c->y && c->scratch_a && c->scratch_b && c->acc && c->gather;
    for (uint32_t i = 0; ok && i < m->n_inputs; i++)
        ok = (c->in_native[i] = calloc(rows * m->inputs[i].width, esize)) != NULL;
    for (uint32_t i = 0; ok && i < m->n_outputs; i++)
        ok = (c->out_native[i] = calloc(rows * m->outputs[i].width, esize)) != NULL;
    if (!ok) {
        context_free(c);
        return NULL;
    }
    return c;
}

/* Publishes c in a free slot; 0 when all slots are taken. */
static rknn_context slot_open(fake_context* c) {
    rknn_context handle = 0;
    pthread_mutex_lock(&slots_lock);
    for (uint32_t i = 0; i < MAX_CONTEXTS; i++) {
        fake_slot* s = &slots[i];
        if (atomic_load(&s->gen) != 0 || atomic_load(&s->busy) != 0) continue;
        if (++s->next_gen == 0) s->next_gen = 1;
        s->ctx = c;
        atomic_store(&s->core_mask, RKNN_NPU_CORE_AUTO);
        atomic_store(&s->gen, s->next_gen);
        handle = (rknn_context)s->next_gen << 32 | (i + 1);
        break;
    }
    pthread_mutex_unlock(&slots_lock);
    if (handle) atomic_fetch_add(&fake_live_ctx, 1);
    return handle;
}

static int publish(fake_context* c, rknn_context* out) {
    if (!c) return fake_fail(RKNN_ERR_MALLOC_FAIL, "out of memory creating a context");
    rknn_context handle = slot_open(c);
    if (!handle) {
        context_free(c);
        return fake_fail(RKNN_ERR_MALLOC_FAIL, "more than %u live contexts", MAX_CONTEXTS);
    }
    *out = handle;
    return RKNN_SUCC;
}

/* size == 0 means `model` is a NUL-terminated path, as with the real runtime. */
static fake_model* load_model(void* model, uint32_t size, fake_model* share) {
    if (size) return fake_model_parse(model, size, share);
    FILE* f = fopen(model, "rb");
    if (!f) {
        fake_fail(RKNN_ERR_MODEL_INVALID, "cannot open model file %s", (const char*)model);
        return NULL;
    }
    uint8_t* data = NULL;
    size_t len = 0, cap = 0, got;
    do {
        if (len == cap) {
            uint8_t* grown = cap < (1u << 30) ? realloc(data, cap = cap ? 2 * cap : 4096) : NULL;
            if (!grown) break;
            data = grown;
        }
        got = fread(data + len, 1, cap - len, f);
        len += got;
    } while (got > 0);
    int failed = ferror(f) || !feof(f);
    fclose(f);
    fake_model* m = failed ? NULL : fake_model_parse(data, len, share);
    if (failed) fake_fail(RKNN_ERR_MODEL_INVALID, "cannot read model file %s", (const char*)model);
    free(data);
    return m;
}

int rknn_init(rknn_context* context, void* model, uint32_t size, uint32_t flag,
              rknn_init_extend* extend) {
    /* Of rknn_init_extend only .ctx is read, with RKNN_FLAG_SHARE_WEIGHT_MEM: model fds and
     * offsets are not emulated. */
    FAKE_ENTER(rknn_init, err);
    atomic_store(&fake_init_flags, flag);
    if (!context || !model) {
        fake_count(CNT_BAD_POINTER);
        return fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_init: NULL %s", context ? "model" : "context");
    }
    *context = 0;
    if (!(flag & RKNN_FLAG_SHARE_WEIGHT_MEM)) {
        fake_model* m = load_model(model, size, NULL);
        if (!m) return RKNN_ERR_MODEL_INVALID;
        return publish(context_new(m, flag), context);
    }
    if (!extend) {
        fake_count(CNT_BAD_POINTER);
        return fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_init: RKNN_FLAG_SHARE_WEIGHT_MEM needs "
                         "rknn_init_extend.ctx, the context whose weights to share");
    }
    fake_slot* s;
    fake_context* src = fake_model_ctx_enter(extend->ctx, &s, &err);
    if (!src) return err;
    fake_model* m = load_model(model, size, src->model);
    fake_ctx_leave(s);
    if (!m) return RKNN_ERR_MODEL_INVALID; /* e.g. layers of other shapes than the source's */
    return publish(context_new(m, flag), context);
}

int rknn_dup_context(rknn_context* context_in, rknn_context* context_out) {
    FAKE_ENTER(rknn_dup_context, err);
    if (!context_in || !context_out) {
        fake_count(CNT_BAD_POINTER);
        return fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_dup_context: NULL context pointer");
    }
    fake_slot* s;
    fake_context* c = fake_model_ctx_enter(*context_in, &s, &err);
    if (!c) return err;
    atomic_fetch_add(&c->model->refs, 1);
    fake_context* copy = context_new(c->model, c->flags);
    fake_ctx_leave(s);
    return publish(copy, context_out);
}

/* Frees the slot of an entered context, then the context. */
static void close_entered(fake_slot* s, fake_context* c) {
    pthread_mutex_lock(&slots_lock);
    atomic_store(&s->gen, 0);
    s->ctx = NULL;
    pthread_mutex_unlock(&slots_lock);
    fake_ctx_leave(s);
    context_free(c);
    atomic_fetch_sub(&fake_live_ctx, 1);
}

int rknn_destroy(rknn_context context) {
    FAKE_ENTER(rknn_destroy, err);
    fake_slot* s;
    fake_context* c = fake_model_ctx_enter(context, &s, &err);
    if (!c) return err;
    close_entered(s, c);
    return RKNN_SUCC;
}

rknn_context fake_ctx_open(void) {
    rknn_context handle = 0;
    publish(calloc(1, sizeof(fake_context)), &handle);
    return handle;
}

int fake_ctx_close(rknn_context handle) {
    fake_slot* s;
    int err;
    fake_context* c = fake_ctx_enter(handle, &s, &err);
    if (!c) return err;
    close_entered(s, c);
    return RKNN_SUCC;
}

/* The SoC is read per call (tests switch it between contexts); not a hot path. */
static const char* emulated_soc(void) {
    const char* soc = getenv("RKRT_FAKE_SOC");
    return soc && *soc ? soc : "rk3588";
}

/* Single-core NPUs (RK3566/RK3568/RK3562...) refuse the call itself, AUTO included: "It will
 * return the error code if it is set on platform with a single-core NPU architecture"
 * (RKNN runtime API reference 2.3.2, rknn_set_core_mask). */
static int mask_allowed(const char* soc, uint32_t mask) {
    int multi_core = strcmp(soc, "rk3588") == 0 || strcmp(soc, "rk3576") == 0;
    if (mask == RKNN_NPU_CORE_AUTO) return multi_core;
    if (strcmp(soc, "rk3588") == 0)
        return mask == RKNN_NPU_CORE_0 || mask == RKNN_NPU_CORE_1 || mask == RKNN_NPU_CORE_2 ||
               mask == RKNN_NPU_CORE_0_1 || mask == RKNN_NPU_CORE_0_1_2 ||
               mask == RKNN_NPU_CORE_ALL;
    if (strcmp(soc, "rk3576") == 0)
        return mask == RKNN_NPU_CORE_0 || mask == RKNN_NPU_CORE_1 || mask == RKNN_NPU_CORE_0_1 ||
               mask == RKNN_NPU_CORE_ALL;
    return 0;
}

int rknn_set_core_mask(rknn_context context, rknn_core_mask core_mask) {
    FAKE_ENTER(rknn_set_core_mask, err);
    fake_slot* s;
    if (!fake_ctx_enter(context, &s, &err)) return err;
    const char* soc = emulated_soc();
    if (mask_allowed(soc, (uint32_t)core_mask)) {
        atomic_store(&s->core_mask, (uint32_t)core_mask);
        err = RKNN_SUCC;
    } else {
        err = fake_fail(RKNN_ERR_PARAM_INVALID, "core mask %#x is not supported on %s",
                        (unsigned)core_mask, soc);
    }
    fake_ctx_leave(s);
    return err;
}

int rknn_set_batch_core_num(rknn_context context, int core_num) {
    FAKE_ENTER(rknn_set_batch_core_num, err);
    fake_slot* s;
    if (!fake_ctx_enter(context, &s, &err)) return err;
    const char* soc = emulated_soc();
    int ok = strcmp(soc, "rk3588") == 0 ? core_num >= 1 && core_num <= 3
             : strcmp(soc, "rk3576") == 0 ? core_num >= 1 && core_num <= 2
                                          : core_num == 1;
    err = ok ? RKNN_SUCC
             : fake_fail(RKNN_ERR_PARAM_INVALID, "batch core num %d is not supported on %s",
                         core_num, soc);
    fake_ctx_leave(s);
    return err;
}

/* All inputs share the batch: the fake concatenates them into one matrix. */
static int set_shapes(fake_context* c, uint32_t n_inputs, const rknn_tensor_attr* attrs) {
    const fake_model* m = c->model;
    if (!attrs) {
        fake_count(CNT_BAD_POINTER);
        return fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_set_input_shapes: NULL attrs");
    }
    if (n_inputs != m->n_inputs)
        return fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_set_input_shapes: %u attrs, the model has %u inputs",
                         n_inputs, m->n_inputs);
    uint32_t batch = attrs[0].dims[0];
    for (uint32_t k = 0; k < n_inputs; k++) {
        const rknn_tensor_attr* a = &attrs[k];
        if (a->index >= m->n_inputs || a->n_dims != 2 || a->dims[1] != m->inputs[a->index].width ||
            a->dims[0] != batch || !fake_model_has_batch(m, a->dims[0]))
            return fake_fail(RKNN_ERR_PARAM_INVALID,
                             "rknn_set_input_shapes: input %u shape is not one the model allows",
                             a->index);
    }
    c->batch = batch;
    return RKNN_SUCC;
}

int rknn_set_input_shapes(rknn_context ctx, uint32_t n_inputs, rknn_tensor_attr attr[]) {
    FAKE_ENTER(rknn_set_input_shapes, err);
    fake_slot* s;
    fake_context* c = fake_model_ctx_enter(ctx, &s, &err);
    if (!c) return err;
    err = set_shapes(c, n_inputs, attr);
    fake_ctx_leave(s);
    return err;
}

int rknn_set_input_shape(rknn_context ctx, rknn_tensor_attr* attr) {
    FAKE_ENTER(rknn_set_input_shape, err);
    fake_slot* s;
    fake_context* c = fake_model_ctx_enter(ctx, &s, &err);
    if (!c) return err;
    err = set_shapes(c, 1, attr);
    fake_ctx_leave(s);
    return err;
}
