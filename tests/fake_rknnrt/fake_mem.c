/* Zero-copy memory: rknn_create_mem*, rknn_destroy_mem, rknn_set_io_mem, rknn_set_weight_mem,
 * rknn_set_internal_mem, rknn_mem_sync, and the mem lookup the matmul API shares. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fake_internal.h"

/* Records are recycled, never freed: a pointer to a destroyed mem can still be
 * recognised (its serial is even) instead of being read after free. */
static pthread_mutex_t mems_lock = PTHREAD_MUTEX_INITIALIZER;
static fake_mem* all_mems;
static fake_mem* free_mems;

fake_mem* fake_mem_lookup(rknn_context ctx, const rknn_tensor_mem* mem, int* err) {
    fake_mem* found = NULL;
    pthread_mutex_lock(&mems_lock);
    for (fake_mem* r = all_mems; r && mem; r = r->next_all)
        if (&r->pub == mem) {
            found = r;
            break;
        }
    pthread_mutex_unlock(&mems_lock);
    const char* why = !mem     ? "NULL rknn_tensor_mem"
                      : !found ? "rknn_tensor_mem was not created by this runtime"
                      : !(atomic_load(&found->serial) & 1u) ? "rknn_tensor_mem was destroyed"
                      : found->owner != ctx ? "rknn_tensor_mem belongs to another context"
                                            : NULL;
    if (!why) return found;
    fake_count(CNT_BAD_POINTER);
    *err = fake_fail(RKNN_ERR_PARAM_INVALID, "%s", why);
    return NULL;
}

static fake_mem* record_new(rknn_context owner) {
    pthread_mutex_lock(&mems_lock);
    fake_mem* r = free_mems;
    if (r) {
        free_mems = r->next_free;
    } else if ((r = calloc(1, sizeof *r))) {
        r->next_all = all_mems;
        all_mems = r;
    }
    pthread_mutex_unlock(&mems_lock);
    if (!r) return NULL;
    memset(&r->pub, 0, sizeof r->pub);
    r->owner = owner;
    r->alloc = r->map = NULL;
    r->map_len = 0;
    r->last_sync = 0;
    r->syncs_to_device = r->syncs_from_device = 0;
    r->flushed = r->written = 0;
    r->pub.fd = -1;
    atomic_fetch_add(&r->serial, 1); /* odd: alive */
    atomic_fetch_add(&fake_live_mem, 1);
    return r;
}

static void record_free(fake_mem* r) {
    atomic_fetch_add(&r->serial, 1);
    free(r->alloc);
    if (r->map) munmap(r->map, r->map_len);
    r->data = NULL;
    r->capacity = 0;
    pthread_mutex_lock(&mems_lock);
    r->next_free = free_mems;
    free_mems = r;
    pthread_mutex_unlock(&mems_lock);
    atomic_fetch_sub(&fake_live_mem, 1);
}

static rknn_tensor_mem* create_inside(rknn_context ctx, uint64_t size, const char* fn) {
    int err;
    fake_slot* s;
    if (!fake_ctx_enter(ctx, &s, &err)) return NULL;
    fake_mem* r = NULL;
    void* p = NULL;
    if (size == 0 || size > UINT32_MAX) {
        fake_fail(RKNN_ERR_PARAM_INVALID, "%s: size %llu out of range", fn,
                  (unsigned long long)size);
    } else if (!(p = aligned_alloc(64, (size + 63u) / 64u * 64u)) || !(r = record_new(ctx))) {
        free(p);
        fake_fail(RKNN_ERR_MALLOC_FAIL, "%s: out of memory", fn);
    } else {
        /* The API promises nothing about new memory's contents: a recognisable pattern
         * (0xFF bytes: float16/float32 NaN, int8 -1) shows code that relies on zeros. */
        memset(p, 0xFF, size);
        r->alloc = r->data = p;
        r->capacity = size;
        r->pub.virt_addr = p;
        r->pub.phys_addr = (uint64_t)(uintptr_t)p; /* stands in for a DMA address */
        r->pub.size = (uint32_t)size;
        r->pub.flags = RKNN_TENSOR_MEMORY_FLAGS_ALLOC_INSIDE;
    }
    fake_ctx_leave(s);
    return r ? &r->pub : NULL;
}

rknn_tensor_mem* rknn_create_mem(rknn_context ctx, uint32_t size) {
    FAKE_ENTER(rknn_create_mem, NULL);
    return create_inside(ctx, size, "rknn_create_mem");
}

rknn_tensor_mem* rknn_create_mem2(rknn_context ctx, uint64_t size, uint64_t alloc_flags) {
    (void)alloc_flags; /* cacheability and SRAM are meaningless here */
    FAKE_ENTER(rknn_create_mem2, NULL);
    return create_inside(ctx, size, "rknn_create_mem2");
}

/* A DMA-BUF's /proc/self/fd link reads "/dmabuf:<name>" (Linux >= 5.x) or
 * "anon_inode:dmabuf" (older kernels). */
static int is_dmabuf(int fd) {
    char path[64], link[256];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    if (n < 0) return 0;
    link[n] = 0;
    return strncmp(link, "/dmabuf:", 8) == 0 || strncmp(link, "anon_inode:dmabuf", 17) == 0;
}

rknn_tensor_mem* rknn_create_mem_from_fd(rknn_context ctx, int32_t fd, void* virt_addr,
                                         uint32_t size, int32_t offset) {
    FAKE_ENTER(rknn_create_mem_from_fd, NULL);
    fake_slot* s;
    if (!fake_ctx_enter(ctx, &s, &err)) return NULL;
    fake_mem* r = NULL;
    if (fd < 0 || offset < 0 || size == 0) {
        fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_create_mem_from_fd: fd %d, offset %d, size %u",
                  fd, offset, size);
    } else if (!is_dmabuf(fd) && !atomic_load(&fake_non_dmabuf_ok)) {
        /* The NPU driver imports the fd as a DMA-BUF; a file or memfd is not one. */
        fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_create_mem_from_fd: fd %d is not a DMA-BUF", fd);
    } else {
        /* The runtime maps the fd itself, as the NPU would import the DMA-BUF. */
        long page = sysconf(_SC_PAGESIZE);
        size_t delta = (size_t)offset % (size_t)page, len = delta + size;
        void* map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)(offset - (int32_t)delta));
        if (map == MAP_FAILED) {
            fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_create_mem_from_fd: cannot map fd %d", fd);
        } else if (!(r = record_new(ctx))) {
            munmap(map, len);
            fake_fail(RKNN_ERR_MALLOC_FAIL, "rknn_create_mem_from_fd: out of memory");
        } else {
            r->map = map;
            r->map_len = len;
            r->data = (uint8_t*)map + delta;
            r->capacity = size;
            r->pub.virt_addr = virt_addr ? virt_addr : r->data;
            r->pub.fd = fd;
            r->pub.offset = offset;
            r->pub.size = size;
            r->pub.flags = RKNN_TENSOR_MEMORY_FLAGS_FROM_FD;
        }
    }
    fake_ctx_leave(s);
    return r ? &r->pub : NULL;
}

rknn_tensor_mem* rknn_create_mem_from_phys(rknn_context ctx, uint64_t phys_addr, void* virt_addr,
                                           uint32_t size) {
    FAKE_ENTER(rknn_create_mem_from_phys, NULL);
    fake_slot* s;
    if (!fake_ctx_enter(ctx, &s, &err)) return NULL;
    fake_mem* r = NULL;
    if (!virt_addr) {
        fake_count(CNT_BAD_POINTER);
        fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_create_mem_from_phys: NULL virt_addr");
    } else if (size == 0) {
        fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_create_mem_from_phys: size 0");
    } else if (!(r = record_new(ctx))) {
        fake_fail(RKNN_ERR_MALLOC_FAIL, "rknn_create_mem_from_phys: out of memory");
    } else {
        /* Trusts the caller's mapping of the physical address, like the real one. */
        r->data = virt_addr;
        r->capacity = size;
        r->pub.virt_addr = virt_addr;
        r->pub.phys_addr = phys_addr;
        r->pub.size = size;
        r->pub.flags = RKNN_TENSOR_MEMORY_FLAGS_FROM_PHYS;
    }
    fake_ctx_leave(s);
    return r ? &r->pub : NULL;
}

rknn_tensor_mem* rknn_create_mem_from_mb_blk(rknn_context ctx, void* mb_blk, int32_t offset) {
    (void)ctx;
    (void)mb_blk;
    (void)offset;
    FAKE_ENTER(rknn_create_mem_from_mb_blk, NULL);
    fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_create_mem_from_mb_blk: RK MPI blocks are not emulated");
    return NULL;
}

int rknn_destroy_mem(rknn_context ctx, rknn_tensor_mem* mem) {
    FAKE_ENTER(rknn_destroy_mem, err);
    fake_slot* s;
    if (!fake_ctx_enter(ctx, &s, &err)) return err;
    fake_mem* r = fake_mem_lookup(ctx, mem, &err);
    if (r) record_free(r);
    fake_ctx_leave(s);
    return err;
}

/* The role of r on a model context: 1 bound input, 2 bound output, 0 neither. */
static int bound_role(const fake_context* c, const fake_mem* r) {
    const fake_model* m = c->model;
    for (uint32_t i = 0; m && c->in_bind && i < m->n_inputs; i++)
        if (c->in_bind[i].mem == r && fake_binding_valid(&c->in_bind[i])) return 1;
    for (uint32_t i = 0; m && c->out_bind && i < m->n_outputs; i++)
        if (c->out_bind[i].mem == r && fake_binding_valid(&c->out_bind[i])) return 2;
    return 0;
}

/* TO_DEVICE writes the CPU cache back before the NPU reads; FROM_DEVICE drops it so the CPU
 * reads what the NPU wrote (API reference, rknn_mem_sync). The other direction on a bound
 * tensor, or invalidating an output no run has written since, is counted. */
static int sync(fake_context* c, fake_mem* r, rknn_mem_sync_mode mode) {
    if (mode < RKNN_MEMORY_SYNC_TO_DEVICE || mode > RKNN_MEMORY_SYNC_BIDIRECTIONAL)
        return fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_mem_sync: mode %d", (int)mode);
    int role = bound_role(c, r);
    if ((role == 1 && mode == RKNN_MEMORY_SYNC_FROM_DEVICE) ||
        (role == 2 && mode == RKNN_MEMORY_SYNC_TO_DEVICE))
        fake_count(CNT_SYNC_DIRECTION);
    if (role == 2 && mode != RKNN_MEMORY_SYNC_TO_DEVICE && !r->written) fake_count(CNT_SYNC_ORDER);
    r->last_sync = (int)mode;
    if (mode & RKNN_MEMORY_SYNC_TO_DEVICE) {
        r->syncs_to_device++;
        r->flushed = 1;
    }
    if (mode & RKNN_MEMORY_SYNC_FROM_DEVICE) {
        r->syncs_from_device++;
        r->written = 0;
    }
    return RKNN_SUCC;
}

int rknn_mem_sync(rknn_context context, rknn_tensor_mem* mem, rknn_mem_sync_mode mode) {
    FAKE_ENTER(rknn_mem_sync, err);
    fake_slot* s;
    fake_context* c = fake_ctx_enter(context, &s, &err);
    if (!c) return err;
    fake_mem* r = fake_mem_lookup(context, mem, &err);
    if (r) err = sync(c, r, mode);
    fake_ctx_leave(s);
    return err;
}

long long fake_mem_info(const void* mem, const char* field) {
    fake_mem* found = NULL;
    pthread_mutex_lock(&mems_lock);
    for (fake_mem* r = all_mems; r && mem; r = r->next_all)
        if (&r->pub == mem && (atomic_load(&r->serial) & 1u)) found = r;
    pthread_mutex_unlock(&mems_lock);
    if (!found || !field) return -1;
    if (strcmp(field, "last_sync") == 0) return found->last_sync;
    if (strcmp(field, "syncs_to_device") == 0) return found->syncs_to_device;
    if (strcmp(field, "syncs_from_device") == 0) return found->syncs_from_device;
    if (strcmp(field, "unread_output") == 0) return found->written;
    return -1;
}

int rknn_set_weight_mem(rknn_context ctx, rknn_tensor_mem* mem) {
    FAKE_ENTER(rknn_set_weight_mem, err);
    fake_slot* s;
    fake_context* c = fake_model_ctx_enter(ctx, &s, &err);
    if (!c) return err;
    fake_mem* r = fake_mem_lookup(ctx, mem, &err);
    if (r && r->capacity < c->model->weight_bytes)
        err = fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_set_weight_mem: mem too small");
    fake_ctx_leave(s);
    return err;
}

int rknn_set_internal_mem(rknn_context ctx, rknn_tensor_mem* mem) {
    FAKE_ENTER(rknn_set_internal_mem, err);
    fake_slot* s;
    if (!fake_model_ctx_enter(ctx, &s, &err)) return err;
    fake_mem_lookup(ctx, mem, &err);
    fake_ctx_leave(s);
    return err;
}

/* The layout a 4-D input's buffer has, from the attr given to rknn_set_io_mem: its fmt
 * (UNDEFINED: the plain one), and for NHWC/NC1HWC2 its w_stride (0: unpadded rows). */
static int bound_layout(const fake_tensor* t, const rknn_tensor_attr* attr, fake_layout* l) {
    *l = fake_plain_layout(t);
    if (attr->fmt == RKNN_TENSOR_UNDEFINED || attr->fmt == RKNN_TENSOR_NCHW) {
        if (attr->fmt == RKNN_TENSOR_NCHW) l->fmt = RKNN_TENSOR_NCHW;
        return RKNN_SUCC;
    }
    if (attr->fmt != RKNN_TENSOR_NHWC && attr->fmt != RKNN_TENSOR_NC1HWC2)
        return fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_set_io_mem: input fmt %d", (int)attr->fmt);
    if (attr->w_stride && attr->w_stride < t->w)
        return fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_set_io_mem: w_stride %u < width %u",
                         attr->w_stride, t->w);
    l->fmt = attr->fmt;
    l->w_stride = attr->w_stride ? attr->w_stride : t->w;
    if (attr->fmt == RKNN_TENSOR_NC1HWC2) {
        l->c2 = attr->n_dims == 5 ? attr->dims[4] : 0;
        if (l->c2 == 0 || l->c2 > 64)
            return fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_set_io_mem: NC1HWC2 needs dims[4] = C2");
    }
    return RKNN_SUCC;
}

/* The attr names the tensor (inputs and outputs share index 0, 1, ...); its type is the
 * buffer's: float32 or the native type (and for inputs the types rknn_inputs_set takes). */
static int bind(fake_context* c, fake_mem* r, const rknn_tensor_attr* attr) {
    const fake_model* m = c->model;
    if (c->mode == MODE_GENERAL) return fake_mixed("rknn_set_io_mem");
    const fake_tensor* t = NULL;
    fake_binding* b = NULL;
    uint32_t index = 0;
    for (uint32_t i = 0; i < m->n_inputs && !t; i++)
        if (strncmp(attr->name, m->inputs[i].name, RKNN_MAX_NAME_LEN) == 0)
            t = &m->inputs[i], b = &c->in_bind[i], index = i;
    for (uint32_t i = 0; i < m->n_outputs && !t; i++)
        if (strncmp(attr->name, m->outputs[i].name, RKNN_MAX_NAME_LEN) == 0)
            t = &m->outputs[i], b = &c->out_bind[i], index = i;
    if (!t || attr->index != index)
        return fake_fail(RKNN_ERR_PARAM_INVALID,
                         "rknn_set_io_mem: attr (index %u, name \"%.64s\") names no tensor: pass "
                         "an attr from rknn_query", attr->index, attr->name);
    int is_input = b == &c->in_bind[index];
    if (is_input) {
        int err = fake_check_input_type(m, attr->type, index);
        if (err) return err;
    } else if (attr->type != RKNN_TENSOR_FLOAT32 && attr->type != m->dtype) {
        return fake_fail(RKNN_ERR_PARAM_INVALID,
                         "rknn_set_io_mem: output %u type %d: use FLOAT32 or the native type",
                         index, (int)attr->type);
    }
    fake_layout layout = fake_plain_layout(t);
    if (is_input && t->n_dims == 4) {
        int err = bound_layout(t, attr, &layout);
        if (err) return err;
    }
    size_t elems = t->n_dims == 4 ? fake_layout_elems(&layout) : t->width;
    size_t need = (size_t)c->batch * elems * fake_type_size(attr->type);
    if (r->capacity < need) {
        fake_count(CNT_SIZE_MISMATCH);
        return fake_fail(RKNN_ERR_PARAM_INVALID,
                         "rknn_set_io_mem: mem of %llu bytes, %s %u needs %zu",
                         (unsigned long long)r->capacity, is_input ? "input" : "output", index,
                         need);
    }
    b->mem = r;
    b->serial = atomic_load(&r->serial);
    b->type = attr->type;
    b->layout = layout;
    c->mode = MODE_ZERO_COPY;
    return RKNN_SUCC;
}

int rknn_set_io_mem(rknn_context ctx, rknn_tensor_mem* mem, rknn_tensor_attr* attr) {
    FAKE_ENTER(rknn_set_io_mem, err);
    fake_slot* s;
    fake_context* c = fake_model_ctx_enter(ctx, &s, &err);
    if (!c) return err;
    fake_mem* r = fake_mem_lookup(ctx, mem, &err);
    if (r && attr) {
        err = bind(c, r, attr);
    } else if (r) {
        fake_count(CNT_BAD_POINTER);
        err = fake_fail(RKNN_ERR_PARAM_INVALID, "rknn_set_io_mem: NULL attr");
    }
    fake_ctx_leave(s);
    return err;
}
