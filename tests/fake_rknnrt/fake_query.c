/* rknn_query: tensor attrs (plain, native, current), versions, sizes, perf. */
#include <stdio.h>
#include <string.h>

#include "fake_internal.h"

enum attr_kind { ATTR_PLAIN, ATTR_NATIVE };

/* A 4-D input: dims in the order of the attr's format (NC1HWC2: N, C1, H, W, C2), as the
 * real runtime reports them; the native layout has rows of w_stride pixels. */
static void fill_image_dims(const fake_tensor* t, uint32_t batch, enum attr_kind kind,
                            rknn_tensor_attr* a) {
    fake_layout l = kind == ATTR_NATIVE ? fake_native_layout(t) : fake_plain_layout(t);
    uint32_t nchw[4] = {batch, t->c, t->h, t->w}, nhwc[4] = {batch, t->h, t->w, t->c};
    a->fmt = l.fmt;
    a->n_dims = 4;
    memcpy(a->dims, l.fmt == RKNN_TENSOR_NHWC ? nhwc : nchw, sizeof nchw);
    if (l.fmt == RKNN_TENSOR_NC1HWC2) {
        a->n_dims = 5;
        a->dims[1] = (t->c + l.c2 - 1) / l.c2;
        a->dims[4] = l.c2;
    }
    a->w_stride = l.fmt == RKNN_TENSOR_NCHW ? 0 : l.w_stride;
    size_t bytes = (size_t)batch * fake_layout_elems(&l) * fake_type_size(a->type);
    a->size_with_stride = kind == ATTR_NATIVE ? (uint32_t)((bytes + 63u) / 64u * 64u) : a->size;
}

/* dims = (batch, width); the native layout pads the buffer to 64 bytes. */
static void fill_attr(const fake_model* m, const fake_tensor* t, uint32_t index, uint32_t batch,
                      enum attr_kind kind, rknn_tensor_attr* a) {
    memset(a, 0, sizeof *a);
    a->index = index;
    a->n_dims = 2;
    a->dims[0] = batch;
    a->dims[1] = t->width;
    memcpy(a->name, t->name, sizeof a->name);
    a->n_elems = batch * t->width;
    a->size = a->n_elems * (uint32_t)fake_type_size(m->dtype);
    a->fmt = RKNN_TENSOR_UNDEFINED;
    a->type = m->dtype;
    if (m->dtype == RKNN_TENSOR_INT8) {
        a->qnt_type = RKNN_TENSOR_QNT_AFFINE_ASYMMETRIC;
        a->zp = t->zp;
        a->scale = t->scale;
    } else {
        a->qnt_type = RKNN_TENSOR_QNT_NONE;
        a->scale = 1.0f;
    }
    a->w_stride = t->width;
    a->size_with_stride = kind == ATTR_NATIVE ? (a->size + 63u) / 64u * 64u : a->size;
    if (t->n_dims == 4) fill_image_dims(t, batch, kind, a);
}

static int query_attr(const fake_context* c, int is_input, enum attr_kind kind, int current,
                      rknn_tensor_attr* a) {
    const fake_model* m = c->model;
    uint32_t n = is_input ? m->n_inputs : m->n_outputs;
    if (a->index >= n)
        return fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_query: %s index %u, the model has %u",
                         is_input ? "input" : "output", a->index, n);
    const fake_tensor* t = is_input ? &m->inputs[a->index] : &m->outputs[a->index];
    fill_attr(m, t, a->index, current ? c->batch : m->batches[0], kind, a);
    return RKNN_SUCC;
}

static int query_range(const fake_model* m, rknn_input_range* r) {
    if (m->n_batches < 2)
        return fake_fail(RKNN_ERR_MODEL_INVALID,
                         "rknn_query(INPUT_DYNAMIC_RANGE): the model has one fixed shape");
    if (r->index >= m->n_inputs)
        return fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_query: input index %u, the model has %u",
                         r->index, m->n_inputs);
    const fake_tensor* t = &m->inputs[r->index];
    uint32_t index = r->index;
    memset(r, 0, sizeof *r);
    r->index = index;
    r->shape_number = m->n_batches;
    r->fmt = RKNN_TENSOR_UNDEFINED;
    memcpy(r->name, t->name, sizeof r->name);
    r->n_dims = 2;
    for (uint32_t i = 0; i < m->n_batches; i++) {
        r->dyn_range[i][0] = m->batches[i];
        r->dyn_range[i][1] = t->width;
    }
    return RKNN_SUCC;
}

static size_t info_size(rknn_query_cmd cmd) {
    switch (cmd) {
    case RKNN_QUERY_IN_OUT_NUM: return sizeof(rknn_input_output_num);
    case RKNN_QUERY_INPUT_ATTR:
    case RKNN_QUERY_OUTPUT_ATTR:
    case RKNN_QUERY_NATIVE_INPUT_ATTR:
    case RKNN_QUERY_NATIVE_OUTPUT_ATTR:
    case RKNN_QUERY_NATIVE_NHWC_INPUT_ATTR:
    case RKNN_QUERY_NATIVE_NHWC_OUTPUT_ATTR:
    case RKNN_QUERY_CURRENT_INPUT_ATTR:
    case RKNN_QUERY_CURRENT_OUTPUT_ATTR:
    case RKNN_QUERY_CURRENT_NATIVE_INPUT_ATTR:
    case RKNN_QUERY_CURRENT_NATIVE_OUTPUT_ATTR: return sizeof(rknn_tensor_attr);
    case RKNN_QUERY_PERF_DETAIL: return sizeof(rknn_perf_detail);
    case RKNN_QUERY_PERF_RUN: return sizeof(rknn_perf_run);
    case RKNN_QUERY_SDK_VERSION: return sizeof(rknn_sdk_version);
    case RKNN_QUERY_MEM_SIZE: return sizeof(rknn_mem_size);
    case RKNN_QUERY_CUSTOM_STRING: return sizeof(rknn_custom_string);
    case RKNN_QUERY_INPUT_DYNAMIC_RANGE: return sizeof(rknn_input_range);
    default: return 0;
    }
}

static int need_perf(const fake_context* c) {
    return (c->flags & RKNN_FLAG_COLLECT_PERF_MASK)
               ? RKNN_SUCC
               : fake_fail(RKNN_ERR_PARAM_INVALID,
                           "rknn_query: perf queries need RKNN_FLAG_COLLECT_PERF_MASK at rknn_init");
}

static int query(fake_context* c, rknn_query_cmd cmd, void* info) {
    const fake_model* m = c->model;
    int err;
    switch (cmd) {
    case RKNN_QUERY_IN_OUT_NUM: {
        rknn_input_output_num* n = info;
        n->n_input = m->n_inputs;
        n->n_output = m->n_outputs;
        return RKNN_SUCC;
    }
    case RKNN_QUERY_INPUT_ATTR: return query_attr(c, 1, ATTR_PLAIN, 0, info);
    case RKNN_QUERY_OUTPUT_ATTR: return query_attr(c, 0, ATTR_PLAIN, 0, info);
    case RKNN_QUERY_NATIVE_INPUT_ATTR:
    case RKNN_QUERY_NATIVE_NHWC_INPUT_ATTR: return query_attr(c, 1, ATTR_NATIVE, 0, info);
    case RKNN_QUERY_NATIVE_OUTPUT_ATTR:
    case RKNN_QUERY_NATIVE_NHWC_OUTPUT_ATTR: return query_attr(c, 0, ATTR_NATIVE, 0, info);
    case RKNN_QUERY_CURRENT_INPUT_ATTR: return query_attr(c, 1, ATTR_PLAIN, 1, info);
    case RKNN_QUERY_CURRENT_OUTPUT_ATTR: return query_attr(c, 0, ATTR_PLAIN, 1, info);
    case RKNN_QUERY_CURRENT_NATIVE_INPUT_ATTR: return query_attr(c, 1, ATTR_NATIVE, 1, info);
    case RKNN_QUERY_CURRENT_NATIVE_OUTPUT_ATTR: return query_attr(c, 0, ATTR_NATIVE, 1, info);
    case RKNN_QUERY_INPUT_DYNAMIC_RANGE: return query_range(m, info);
    case RKNN_QUERY_SDK_VERSION: {
        rknn_sdk_version* v = info;
        memset(v, 0, sizeof *v);
        snprintf(v->api_version, sizeof v->api_version, "%s (fake)", FAKE_SDK_VERSION);
        snprintf(v->drv_version, sizeof v->drv_version, "0.9.8 (fake)");
        return RKNN_SUCC;
    }
    case RKNN_QUERY_MEM_SIZE: {
        rknn_mem_size* s = info;
        memset(s, 0, sizeof *s);
        uint64_t internal = (uint64_t)m->max_batch * (m->in_features + m->out_features) *
                            fake_type_size(m->dtype);
        s->total_weight_size = (uint32_t)m->weight_bytes;
        s->total_internal_size = (uint32_t)internal;
        s->total_dma_allocated_size = m->weight_bytes + internal;
        return RKNN_SUCC;
    }
    case RKNN_QUERY_CUSTOM_STRING: {
        rknn_custom_string* s = info;
        memset(s, 0, sizeof *s);
        memcpy(s->string, m->custom, sizeof m->custom);
        return RKNN_SUCC;
    }
    case RKNN_QUERY_PERF_RUN:
        /* Answered without RKNN_FLAG_COLLECT_PERF_MASK: the API reference's sample (2.3.2,
         * rknn_query "Query total inference time") inits with flags 0. */
        ((rknn_perf_run*)info)->run_duration = c->last_run_us;
        return RKNN_SUCC;
    case RKNN_QUERY_PERF_DETAIL: {
        if ((err = need_perf(c))) return err;
        rknn_perf_detail* d = info;
        int len = snprintf(c->perf_detail, sizeof c->perf_detail,
                           "fake perf detail: %u dense layers, batch %u, last run %lld us\n",
                           m->n_layers, c->batch, (long long)c->last_run_us);
        d->perf_data = c->perf_detail;
        d->data_len = (uint64_t)len;
        return RKNN_SUCC;
    }
    default: return fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_query: unsupported command %d", (int)cmd);
    }
}

int rknn_query(rknn_context context, rknn_query_cmd cmd, void* info, uint32_t size) {
    FAKE_ENTER(rknn_query, err);
    fake_slot* s;
    fake_context* c = fake_model_ctx_enter(context, &s, &err);
    if (!c) return err;
    size_t need = info_size(cmd);
    if (!info) {
        fake_count(CNT_BAD_POINTER);
        err = fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_query: NULL info");
    } else if (need == 0) {
        err = fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_query: unsupported command %d", (int)cmd);
    } else if (size < need) {
        err = fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_query: size %u is smaller than %zu", size,
                        need);
    } else {
        err = query(c, cmd, info);
    }
    fake_ctx_leave(s);
    return err;
}
