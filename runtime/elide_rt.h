/* elide_rt.h - the tiny runtime that products link with a generated model object:
 * status codes, the weight blob (format in docs/blob.md: checksum, validation,
 * mapping), a fork/join thread pool with the parallel-for contract of generated
 * code, samplers with a caller-held RNG, and small size helpers.
 * Only libc, pthreads and libm.  Every exported symbol starts with `elide_`; there is
 * no global mutable state; nothing here allocates on the inference path (the pool,
 * the samplers and the blob check never call malloc; create/map do, once). */
#ifndef ELIDE_RT_H
#define ELIDE_RT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ELIDE_RT_ABI_VERSION 2u /* bumped when a declaration here changes meaning */

/* ---- status.c: status codes ---- */

/* ORDER: status_strs[] in runtime/status.c.  The values are part of the ABI: the
 * generated functions return them, so never renumber; append new codes at the end. */
typedef enum elide_status {
	ELIDE_OK = 0,             /* success */
	ELIDE_ERR_ARG,            /* null pointer, bad size or otherwise invalid argument */
	ELIDE_ERR_IO,             /* a file could not be opened or read */
	ELIDE_ERR_NOMEM,          /* an allocation failed */
	ELIDE_ERR_BLOB_MAGIC,     /* not a weight blob: wrong magic */
	ELIDE_ERR_BLOB_VERSION,   /* weight blob of an unsupported format version */
	ELIDE_ERR_BLOB_MODEL,     /* weight blob of another model (model hash differs) */
	ELIDE_ERR_BLOB_SIZE,      /* weight blob truncated, or sizes inconsistent */
	ELIDE_ERR_BLOB_CHECKSUM,  /* weight payload does not match its checksum */
	ELIDE_ERR_NO_WEIGHTS,     /* an entry was called before weights were loaded */
	ELIDE_ERR_TOKEN,          /* token id outside the vocabulary */
	ELIDE_ERR_POS,            /* position negative or past the context */
	ELIDE_ERR_SEQ_LEN,        /* sequence empty or longer than its bound */
	ELIDE_ERR_ABI,            /* object and header (or runtime) ABI versions differ */
	ELIDE_ERR_ALIGN,          /* memory not aligned as required (64 bytes) */
	ELIDE_ERR_BUSY,           /* the context is in use by another call (another thread) */
	ELIDE_STATUS_COUNT        /* number of codes, not a code */
} elide_status;

/* A static, lowercase, human-readable message ("ok", "weight blob checksum mismatch");
 * "unknown status" for a value outside the enum. */
const char *elide_status_str(elide_status s);
/* The ELIDE_*-style name of a code ("ELIDE_ERR_POS"); "ELIDE_UNKNOWN" outside. */
const char *elide_status_name(elide_status s);
/* ELIDE_RT_ABI_VERSION of the library actually linked. */
uint32_t elide_rt_abi_version(void);

/* ---- blob.c: the weight blob (docs/blob.md) ---- */

#define ELIDE_BLOB_MAGIC "ELIDEWB"   /* 8 bytes with the terminating NUL */
#define ELIDE_BLOB_VERSION 2u
#define ELIDE_BLOB_HEADER_SIZE 64u   /* bytes; the payload follows at this offset */
#define ELIDE_BLOB_ALIGN 64u         /* alignment of the payload in memory */

/* The 64-byte header, all integers little-endian (the only byte order supported). */
typedef struct elide_blob_header {
	char magic[8];            /* ELIDE_BLOB_MAGIC, NUL included */
	uint32_t version;         /* ELIDE_BLOB_VERSION */
	uint32_t header_size;     /* ELIDE_BLOB_HEADER_SIZE (a multiple of 64, >= 64) */
	uint64_t model_hash;      /* the compiled model's hash (NAME_MODEL_HASH) */
	uint64_t payload_size;    /* bytes after the header */
	uint64_t checksum;        /* of the header and the payload (docs/blob.md) */
	uint8_t reserved[24];     /* zero (checked) */
} elide_blob_header;

/* The 64-bit checksum of n bytes (XXH64 with seed 0: four lanes, several GB/s).
 * p may be NULL when n is 0. */
uint64_t elide_checksum(const void *p, size_t n);

/* The same checksum over data given in pieces of any size (the compiler's packer
 * streams a blob to its file): init, update for each piece in order, final. */
typedef struct elide_checksum_state {
	uint64_t v[4];            /* the four lanes */
	uint64_t total;           /* bytes so far */
	unsigned char buf[32];    /* a partial stripe */
	uint32_t nbuf;            /* bytes in buf */
} elide_checksum_state;
void elide_checksum_init(elide_checksum_state *s);
void elide_checksum_update(elide_checksum_state *s, const void *p, size_t n);
uint64_t elide_checksum_final(const elide_checksum_state *s);

/* Fills the 64-byte header at hdr64 (format version 2) for a payload of payload_size
 * bytes whose elide_checksum is payload_checksum (computed in pieces by a writer that
 * streams the payload); the header's checksum field then covers the header and the
 * payload.  Used by the compiler's weight packer. */
void elide_blob_header_fill(void *hdr64, uint64_t model_hash, uint64_t payload_size,
                            uint64_t payload_checksum);
/* elide_blob_header_fill with the checksum of the payload in memory. */
void elide_blob_header_init(void *hdr64, uint64_t model_hash, const void *payload,
                            uint64_t payload_size);

/* want_payload of the checks below when any payload size is acceptable. */
#define ELIDE_BLOB_ANY_SIZE UINT64_MAX

/* Validates a whole blob in memory (size bytes from blob): size, magic, version,
 * header size, payload size == size - header size and == want_payload (the model's
 * NAME_WEIGHTS_SIZE - 64; ELIDE_BLOB_ANY_SIZE: not checked), reserved bytes zero,
 * model hash, payload alignment (ELIDE_ERR_ALIGN unless 64-byte aligned), then the
 * checksum of header and payload.  On success sets *payload and *payload_size (either
 * may be NULL).  Never reads outside [blob, blob+size). */
elide_status elide_blob_check(const void *blob, size_t size, uint64_t model_hash,
                              uint64_t want_payload, const void **payload, size_t *payload_size);

/* A read-only file image: mmap'ed when possible, else read into 64-aligned memory. */
typedef struct elide_mapping {
	const void *data;         /* first byte of the file (page- or 64-aligned) */
	size_t size;              /* bytes of the file */
	int kind;                 /* 0 = empty/none, 1 = mmap, 2 = heap copy (internal) */
} elide_mapping;

/* Maps `path` read-only (whole file; ELIDE_ERR_IO if it cannot be opened, is not a
 * regular file or is empty, ELIDE_ERR_BLOB_SIZE if too short for a header).  It does
 * not validate the content: call elide_blob_check on out->data, out->size.  A mapped
 * file must not be truncated or rewritten while the mapping is used: a read past its
 * new end faults with SIGBUS (elide_blob_open and NAME_load_weights copy instead). */
elide_status elide_blob_map(const char *path, elide_mapping *out);
/* Releases a mapping (safe on a zeroed or already released one). */
void elide_blob_unmap(elide_mapping *m);
/* Reads a blob file into private 64-aligned memory (a copy, not a mapping: the file
 * may be truncated or replaced afterwards without harm) and validates it as
 * elide_blob_check does; the header is checked before the rest is read.  Release
 * with elide_blob_unmap; on error nothing stays allocated. */
elide_status elide_blob_open(const char *path, uint64_t model_hash, uint64_t want_payload,
                             elide_mapping *out, const void **payload, size_t *payload_size);
/* Reads the whole file into malloc'ed, 64-byte aligned memory (free() it); for
 * products that want a private copy.  No validation. */
elide_status elide_blob_read_file(const char *path, void **blob, size_t *size);

/* ---- pool.c: thread pool ---- */

/* Runs the iterations [begin, end) of a loop. */
typedef void (*elide_task_fn)(void *ctx, int64_t begin, int64_t end);
/* Runs fn over [0, n) in chunks (possibly concurrently) and returns when all are done.
 * Generated code calls this through a pointer: either elide_pool_parallel_for with a
 * pool, or a caller-supplied hook with its own `user` pointer. */
typedef void (*elide_parallel_for_fn)(void *user, int64_t n, elide_task_fn fn, void *ctx);

typedef struct elide_pool elide_pool;

/* A pool of nthreads threads, the caller's included (nthreads - 1 workers).
 * nthreads 0: the ELIDE_THREADS environment variable, or 1 when unset or invalid.
 * Clamped to [1, ELIDE_POOL_MAX_THREADS].  NULL when out of memory or threads. */
#define ELIDE_POOL_MAX_THREADS 256
elide_pool *elide_pool_create(int nthreads);
/* Stops and joins the workers; NULL is allowed. */
void elide_pool_destroy(elide_pool *pool);
/* Threads of the pool (1 for NULL). */
int elide_pool_threads(const elide_pool *pool);
/* The elide_parallel_for_fn of the pool (pool: an elide_pool *, or NULL: serial).
 * Splits [0, n) into min(n, threads) contiguous chunks of near-equal size; the
 * calling thread runs chunks too.  Chunks are claimed dynamically, so a descheduled
 * worker delays nothing.  Not reentrant: one parallel_for per pool at a time, and fn
 * must not call it on the same pool.  No allocation, no syscall when workers spin. */
void elide_pool_parallel_for(void *pool, int64_t n, elide_task_fn fn, void *ctx);

/* ---- sample.c: samplers and their RNG ---- */

/* splitmix64 step of the caller-held state (any seed, 0 included). */
uint64_t elide_rng_next(uint64_t *state);
/* Uniform float in [0, 1) with 24 random bits. */
float elide_rng_float(uint64_t *state);

/* Index of the largest logit (the first on ties; NaNs ignored).  -1 when there is
 * no token to choose: every logit NaN, n <= 0 or logits NULL (the samplers below
 * too); fed back to an entry, -1 is rejected with ELIDE_ERR_TOKEN. */
int32_t elide_sample_argmax(const float *logits, int32_t n);
/* Draws from softmax(logits / temperature); temperature <= 0 means argmax. */
int32_t elide_sample_temperature(const float *logits, int32_t n, float temperature,
                                 uint64_t *rng);
/* Nucleus sampling: draws from softmax(logits / temperature) restricted to the
 * smallest set of highest-probability tokens whose mass reaches top_p (tokens tied
 * with the last one included).  top_p >= 1 is plain temperature sampling;
 * temperature <= 0 or top_p <= 0 is argmax.  scratch (may be NULL) speeds it up when
 * it holds ELIDE_TOP_P_SCRATCH(n) bytes, 4-byte aligned; without it the threshold is
 * found by bisection (about 32 passes).  Both give the same token for the same rng. */
#define ELIDE_TOP_P_SCRATCH(n) ((size_t)(n) * 8u)
int32_t elide_sample_top_p(const float *logits, int32_t n, float temperature, float top_p,
                           uint64_t *rng, void *scratch, size_t scratch_size);

/* ---- util.c: sizes, context memory and time ---- */

/* The layout of one layer's KV cache in a context's state region, the one the
 * compiler generates code for: K at offset 0, then V at v_offset; each is head-major,
 * [kv_heads][ctx][head_dim] f32 (one KV head's keys, position after position, one
 * contiguous block of ctx * head_dim floats, which attention streams), ctx *
 * row_bytes in all, padded to a multiple of ELIDE_KV_ALIGN bytes.  A cache with
 * pages (page > 0 positions each, kept for Quest sparse attention) then holds its
 * page bounds at bounds_offset:
 * [kv_heads][pages][2][head_dim] bfloat16 (the per-channel minimum of the keys
 * written into each page rounded toward -inf, then their maximum rounded toward +inf,
 * so that the bounds stay bounds of the f32 keys; one KV head's bounds contiguous, as
 * the page scores read them), padded likewise.  Caches follow each other in state
 * order, each starting ELIDE_KV_ALIGN-aligned.  All zero when a dimension is not
 * positive (page 0: no bounds). */
#define ELIDE_KV_ALIGN 64
typedef struct elide_kv_layout {
	uint64_t row_bytes;     /* one position of K (or V), all heads: kv_heads * head_dim * 4 */
	uint64_t v_offset;      /* V from the start of the cache: K's bytes, padded */
	uint64_t bounds_offset; /* page bounds from the start of the cache: 2 * v_offset */
	uint64_t bounds_bytes;  /* the page bounds, padded (0 without pages) */
	uint64_t bytes;         /* the whole cache: 2 * v_offset + bounds_bytes */
} elide_kv_layout;
elide_kv_layout elide_kv_layout_of(int64_t ctx, int64_t kv_heads, int64_t head_dim, int64_t page);
/* Bytes of one layer's KV cache, padding included: elide_kv_layout_of(...).bytes. */
uint64_t elide_kv_bytes(int64_t ctx, int64_t kv_heads, int64_t head_dim, int64_t page);
/* n rounded up to a multiple of align (a power of two). */
uint64_t elide_align_up(uint64_t n, uint64_t align);
/* Memory for a context of size bytes (NAME_create's): 64-aligned; from 2 MiB on,
 * 2 MiB-aligned and offered to transparent huge pages, because attention reads the KV
 * caches in strides (dense) or at scattered pages (Quest), and with 4 KiB pages the
 * TLB misses cost a large part of the read rate.  NULL when out of memory; free()
 * releases it. */
void *elide_alloc_context(size_t size);
/* Monotonic clock in nanoseconds. */
uint64_t elide_now_ns(void);

#ifdef __cplusplus
}
#endif
#endif
