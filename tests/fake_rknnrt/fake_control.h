/*
 * Control API of the test-double librknnrt (not part of the real ABI).
 *
 * Tests reach it through cffi (fake_rknnrt/control.py parses this file), so it
 * holds plain declarations only; a C includer must include <stdint.h> first.
 * Every function is thread-safe.
 */

/* Zero call counts, misuse counters, injected faults, the run delay, the parallel-run
 * maximum, the run gaps, times and ends and the weight bytes allocated; forget the recorded
 * inputs, the calling thread's last error and fake_allow_non_dmabuf. Live objects are never
 * forgotten. */
void fake_reset(void);

/* Live objects: contexts, rknn_tensor_mem blocks, outputs not yet released. */
long long fake_live_contexts(void);
long long fake_live_mems(void);
long long fake_live_outputs(void);

/* Bytes of model weights allocated since the last reset, and held now (a model opened with
 * RKNN_FLAG_SHARE_WEIGHT_MEM allocates none: it uses its source context's). */
long long fake_weight_bytes_allocated(void);
long long fake_weight_bytes_in_use(void);

/* Calls of one exported rknn_* function since the last reset; -1 for an unknown name. */
long long fake_call_count(const char* function);
long long fake_call_count_total(void);

/* Names of the exported rknn_* functions, index 0 .. fake_function_count() - 1. */
int fake_function_count(void);
const char* fake_function_name(int index);

/* The nth next call of `function` fails with `code` (NULL for pointer-returning
 * functions) before doing anything. Returns 0, or -1 for an unknown name or nth < 1. */
int fake_inject(const char* function, int nth, int code);

/* Each rknn_run sleeps us + uniform(0, jitter_us) microseconds, holding no global lock. */
void fake_set_run_delay(uint32_t us, uint32_t jitter_us);

/* Misuse counters: "size_mismatch", "mixed_api", "concurrent", "bad_pointer",
 * "matmul_unsafe", "sync_direction", "sync_order", "unsafe" (their sum); -1 for an unknown
 * name. */
long long fake_counter(const char* name);

/* Most rknn_run calls in flight at the same time since the last reset. */
int fake_max_parallel_runs(void);

/* rknn_run calls in flight now (each has read the run delay it sleeps). */
int fake_runs_in_flight(void);

/* How long contexts sat between two of their runs: the sum (ns) and the number of such gaps,
 * from the return of one rknn_run to the entry of the next on the same context, both after
 * the last fake_reset_run_gaps() (or fake_reset()). This is the time a runtime adds between
 * runs (reading outputs, its own code, setting inputs), apart from the run itself. */
void fake_reset_run_gaps(void);
void fake_run_gaps(long long* total_ns, long long* count);

/* How long the rknn_run calls that entered after the last fake_reset_run_gaps() (or
 * fake_reset()) took, entry to return: the sum (ns) and their number. With a run delay, what
 * the run's sleep overshoots depends on how soon the machine gives the thread a CPU back. */
void fake_run_times(long long* total_ns, long long* count);

/* Where and when those runs returned, in the order they returned: for the first `max` of
 * them, the time (ns, fake_now_ns's clock), the context and the CPU the thread was on. The
 * result is how many runs returned, or -1 when more did than are kept (16384). Read it when
 * no run is in flight. */
long long fake_run_ends(long long* end_ns, unsigned long long* context, int* cpu, long long max);

/* What the last rknn_inputs_set received for input `index`: field "type", "size", "buf"
 * (the pointer), "pass_through" or "fmt"; -1 before any call (since the last reset) or for
 * an unknown field. */
long long fake_last_input(uint32_t index, const char* field);

/* Cache maintenance of a live rknn_tensor_mem: field "last_sync" (the last rknn_mem_sync
 * mode, 0 for none), "syncs_to_device", "syncs_from_device" (counts, BIDIRECTIONAL in
 * both), "unread_output" (1 if a run wrote it since its last FROM_DEVICE sync); -1 for a
 * mem that is not live or an unknown field. */
long long fake_mem_info(const void* mem, const char* field);

/* Flags passed to the last rknn_init. */
uint32_t fake_last_init_flags(void);

/* Core mask of a live context; -1 if the handle is not a live context. */
long long fake_core_mask(uint64_t context);

/* Why the calling thread's last failing rknn_* call failed ("" if none failed). */
const char* fake_last_error(void);

/* rknn_create_mem_from_fd refuses fds that are not DMA-BUFs (as the NPU driver's import
 * does); allow(1) accepts any mappable fd (memfd, files) until the next reset. */
void fake_allow_non_dmabuf(int allow);
