/* Call counts, misuse counters, fault injection and the control API. */
#define _GNU_SOURCE /* sched_getcpu */
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fake_internal.h"

atomic_llong fake_calls[FN_COUNT];
atomic_llong fake_counters[CNT_COUNT];
fake_fault fake_faults[FN_COUNT];
atomic_llong fake_live_ctx, fake_live_mem, fake_live_out;
atomic_llong fake_weight_bytes_total, fake_weight_bytes_live;
atomic_uint fake_init_flags;
atomic_uint fake_delay_us, fake_jitter_us;
atomic_int fake_in_flight, fake_max_in_flight;
atomic_llong fake_gap_ns, fake_gap_count, fake_gap_epoch_ns, fake_run_ns, fake_run_count;
atomic_int fake_non_dmabuf_ok;

#define RUN_ENDS_KEPT 16384
static struct {
    long long end_ns;
    rknn_context context;
    int cpu;
} run_ends[RUN_ENDS_KEPT];
static atomic_llong run_end_count;

/* Resident from the start: pages first written while a runtime is measured would count as
 * that runtime's memory growth (bench/streaming.py's RSS lines). */
__attribute__((constructor)) static void touch_run_ends(void) {
    volatile char* p = (volatile char*)run_ends;
    for (size_t k = 0; k < sizeof run_ends; k += 4096) p[k] = 0;
}

#define FAKE_FN_NAME(name) #name,
static const char* const FUNCTION_NAMES[FN_COUNT] = {FAKE_FUNCTIONS(FAKE_FN_NAME)};
#undef FAKE_FN_NAME

static const char* const COUNTER_NAMES[CNT_COUNT] = {"size_mismatch", "mixed_api", "concurrent",
                                                     "bad_pointer", "matmul_unsafe",
                                                     "sync_direction", "sync_order"};

static _Thread_local char last_error[512];

int fake_fail(int code, const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, args);
    va_end(args);
    return code;
}

const char* fake_last_error(void) { return last_error; }

static int function_index(const char* name) {
    if (!name) return -1;
    for (int i = 0; i < FN_COUNT; i++)
        if (strcmp(FUNCTION_NAMES[i], name) == 0) return i;
    return -1;
}

void fake_reset(void) {
    for (int i = 0; i < FN_COUNT; i++) {
        atomic_store(&fake_calls[i], 0);
        atomic_store(&fake_faults[i].nth, 0);
        atomic_store(&fake_faults[i].code, 0);
    }
    for (int i = 0; i < CNT_COUNT; i++) atomic_store(&fake_counters[i], 0);
    atomic_store(&fake_delay_us, 0);
    atomic_store(&fake_jitter_us, 0);
    atomic_store(&fake_max_in_flight, 0);
    atomic_store(&fake_weight_bytes_total, 0);
    atomic_store(&fake_non_dmabuf_ok, 0);
    fake_reset_run_gaps();
    fake_reset_inputs();
    last_error[0] = 0;
}

long long fake_live_contexts(void) { return atomic_load(&fake_live_ctx); }
long long fake_live_mems(void) { return atomic_load(&fake_live_mem); }
long long fake_live_outputs(void) { return atomic_load(&fake_live_out); }
long long fake_weight_bytes_allocated(void) { return atomic_load(&fake_weight_bytes_total); }
long long fake_weight_bytes_in_use(void) { return atomic_load(&fake_weight_bytes_live); }

long long fake_call_count(const char* function) {
    int i = function_index(function);
    return i < 0 ? -1 : atomic_load(&fake_calls[i]);
}

long long fake_call_count_total(void) {
    long long total = 0;
    for (int i = 0; i < FN_COUNT; i++) total += atomic_load(&fake_calls[i]);
    return total;
}

int fake_function_count(void) { return FN_COUNT; }

const char* fake_function_name(int index) {
    return index >= 0 && index < FN_COUNT ? FUNCTION_NAMES[index] : NULL;
}

int fake_inject(const char* function, int nth, int code) {
    int i = function_index(function);
    if (i < 0 || nth < 1) return -1;
    /* Clear first so a concurrent caller never pairs the new count with the old code. */
    atomic_store(&fake_faults[i].nth, 0);
    atomic_store(&fake_faults[i].code, code);
    atomic_store(&fake_faults[i].nth, nth);
    return 0;
}

void fake_set_run_delay(uint32_t us, uint32_t jitter_us) {
    atomic_store(&fake_delay_us, us);
    atomic_store(&fake_jitter_us, jitter_us);
}

long long fake_counter(const char* name) {
    if (!name) return -1;
    long long sum = 0;
    for (int i = 0; i < CNT_COUNT; i++) {
        long long v = atomic_load(&fake_counters[i]);
        if (strcmp(COUNTER_NAMES[i], name) == 0) return v;
        sum += v;
    }
    return strcmp(name, "unsafe") == 0 ? sum : -1;
}

int fake_max_parallel_runs(void) { return atomic_load(&fake_max_in_flight); }

int64_t fake_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void fake_reset_run_gaps(void) {
    /* Epoch first: a run ending now must not pair with sums about to be zeroed. */
    atomic_store(&fake_gap_epoch_ns, fake_now_ns());
    atomic_store(&fake_gap_ns, 0);
    atomic_store(&fake_gap_count, 0);
    atomic_store(&fake_run_ns, 0);
    atomic_store(&fake_run_count, 0);
    atomic_store(&run_end_count, 0);
}

void fake_record_run_end(rknn_context context, int64_t end_ns) {
    long long k = atomic_fetch_add(&run_end_count, 1);
    if (k < RUN_ENDS_KEPT) {
        run_ends[k].end_ns = end_ns;
        run_ends[k].context = context;
        run_ends[k].cpu = sched_getcpu();
    }
}

long long fake_run_ends(long long* end_ns, unsigned long long* context, int* cpu, long long max) {
    long long n = atomic_load(&run_end_count);
    if (n > RUN_ENDS_KEPT) return -1;
    for (long long k = 0; k < n && k < max; k++) {
        end_ns[k] = run_ends[k].end_ns;
        context[k] = (unsigned long long)run_ends[k].context;
        cpu[k] = run_ends[k].cpu;
    }
    return n;
}

void fake_run_gaps(long long* total_ns, long long* count) {
    *total_ns = atomic_load(&fake_gap_ns);
    *count = atomic_load(&fake_gap_count);
}

void fake_run_times(long long* total_ns, long long* count) {
    *total_ns = atomic_load(&fake_run_ns);
    *count = atomic_load(&fake_run_count);
}

int fake_runs_in_flight(void) { return atomic_load(&fake_in_flight); }

uint32_t fake_last_init_flags(void) { return atomic_load(&fake_init_flags); }

long long fake_core_mask(uint64_t context) {
    fake_slot* s = fake_slot_of(context);
    return s ? (long long)atomic_load(&s->core_mask) : -1;
}

void fake_allow_non_dmabuf(int allow) { atomic_store(&fake_non_dmabuf_ok, allow != 0); }
