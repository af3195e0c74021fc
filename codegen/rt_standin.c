/* rt_standin.c - the runtime functions that generated code calls, in plain libc and
 * pthreads: weight blob header, checksum, check and file read, and a thread pool
 * with the parallel-for contract.  The compiler binds them into the JIT; a product
 * (or a test program) can compile this file with -DCG_RT_ELIDE_NAMES to get the
 * elide_* names the generated object links against.
 * Blob: a 64-byte header, then the payload:
 *   magic "ELIDEWTS" | u32 version | u32 header bytes | u64 model hash |
 *   u64 payload bytes | u64 checksum (FNV-1a over 64-bit words) | zeros
 * Pool: one contiguous chunk per thread, the caller taking the first; workers spin
 * briefly on a generation counter before sleeping (decode issues about a hundred
 * short parallel loops per token). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ORDER: the status enum of codegen/codegen.h */
enum { RT_OK = 0, RT_E_NOMEM = 7, RT_E_BLOB = 8, RT_E_MODEL = 9, RT_E_CHECKSUM = 10, RT_E_IO = 11 };

#define BLOB_MAGIC "ELIDEWTS"
#define BLOB_VERSION 1u
#define BLOB_HDR 64u

uint64_t
cg_rt_blob_checksum(const uint8_t *p, uint64_t n)
{
	uint64_t h = 0xcbf29ce484222325ull, w;
	for (uint64_t i = 0; i + 8 <= n; i += 8) {
		memcpy(&w, p + i, 8);
		h = (h ^ w) * 0x100000001b3ull;
	}
	for (uint64_t i = n & ~(uint64_t)7; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

void
cg_rt_blob_header_init(uint8_t *b, uint64_t model_hash, const uint8_t *payload, uint64_t size)
{
	uint32_t ver = BLOB_VERSION, hdr = BLOB_HDR;
	uint64_t sum = cg_rt_blob_checksum(payload, size);
	memset(b, 0, BLOB_HDR);
	memcpy(b, BLOB_MAGIC, 8);
	memcpy(b + 8, &ver, 4);
	memcpy(b + 12, &hdr, 4);
	memcpy(b + 16, &model_hash, 8);
	memcpy(b + 24, &size, 8);
	memcpy(b + 32, &sum, 8);
}

int
cg_rt_blob_check(const void *blob, uint64_t size, uint64_t model_hash, const void **payload)
{
	const uint8_t *b = blob;
	uint32_t ver, hdr;
	uint64_t h, psize, sum;
	if (!b || !payload || size < BLOB_HDR || memcmp(b, BLOB_MAGIC, 8) != 0)
		return RT_E_BLOB;
	memcpy(&ver, b + 8, 4);
	memcpy(&hdr, b + 12, 4);
	memcpy(&h, b + 16, 8);
	memcpy(&psize, b + 24, 8);
	memcpy(&sum, b + 32, 8);
	if (ver != BLOB_VERSION || hdr != BLOB_HDR || psize != size - hdr)
		return RT_E_BLOB;
	if (h != model_hash)
		return RT_E_MODEL;
	if (cg_rt_blob_checksum(b + hdr, psize) != sum)
		return RT_E_CHECKSUM;
	*payload = b + hdr;
	return RT_OK;
}

int
cg_rt_blob_read_file(const char *path, void **blob, uint64_t *size)
{
	FILE *f = path ? fopen(path, "rb") : NULL;
	if (!f)
		return RT_E_IO;
	long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
	if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
		fclose(f);
		return RT_E_IO;
	}
	uint8_t *b = aligned_alloc(64, ((size_t)n + 64) & ~(size_t)63);
	if (!b) {
		fclose(f);
		return RT_E_NOMEM;
	}
	if (fread(b, 1, (size_t)n, f) != (size_t)n) {
		free(b);
		fclose(f);
		return RT_E_IO;
	}
	fclose(f);
	*blob = b;
	*size = (uint64_t)n;
	return RT_OK;
}

typedef struct Pool {
	int n;                             /* threads, the caller included */
	pthread_t *th;
	pthread_mutex_t mu;                /* guards the job fields below */
	pthread_cond_t cv;
	atomic_uint_fast64_t gen;          /* job number, bumped once per parallel_for */
	atomic_int busy;                   /* workers inside the current job */
	atomic_bool stop;
	void (*fn)(void *, int64_t, int64_t);
	void *ctx;
	int64_t total, chunks, next;       /* the job: chunks claimed in order */
} Pool;

/* Claims and runs chunks of job `gen` until none are left (a stale job: none). */
static void
drain(Pool *p, uint_fast64_t gen)
{
	for (;;) {
		pthread_mutex_lock(&p->mu);
		if (atomic_load(&p->gen) != gen || p->next >= p->chunks) {
			pthread_mutex_unlock(&p->mu);
			return;
		}
		int64_t c = p->next++;
		int64_t lo = p->total * c / p->chunks, hi = p->total * (c + 1) / p->chunks;
		void (*fn)(void *, int64_t, int64_t) = p->fn;
		void *ctx = p->ctx;
		pthread_mutex_unlock(&p->mu);
		if (lo < hi)
			fn(ctx, lo, hi);
	}
}

static void *
worker(void *arg)
{
	Pool *p = arg;
	uint_fast64_t seen = 0;
	for (;;) {
		int spins = 0;
		uint_fast64_t g;
		while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop)) {
			if (++spins < 100000)
				continue;
			pthread_mutex_lock(&p->mu);
			while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
				pthread_cond_wait(&p->cv, &p->mu);
			pthread_mutex_unlock(&p->mu);
		}
		if (atomic_load(&p->stop))
			break;
		seen = g;
		pthread_mutex_lock(&p->mu);
		bool current = atomic_load(&p->gen) == g;
		if (current)
			atomic_fetch_add(&p->busy, 1);
		pthread_mutex_unlock(&p->mu);
		if (!current)
			continue;
		drain(p, g);
		atomic_fetch_sub(&p->busy, 1);
	}
	return NULL;
}

void *
cg_rt_pool_create(int nthreads)
{
	if (nthreads < 2)
		return NULL;
	Pool *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->th = calloc((size_t)nthreads, sizeof *p->th);
	if (!p->th) {
		free(p);
		return NULL;
	}
	p->n = nthreads;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	for (int i = 1; i < nthreads; i++)
		if (pthread_create(&p->th[i], NULL, worker, p) != 0) {
			p->n = i;
			break;
		}
	return p;
}

void
cg_rt_pool_destroy(void *pool)
{
	Pool *p = pool;
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	atomic_store(&p->stop, true);
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 1; i < p->n; i++)
		pthread_join(p->th[i], NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p->th);
	free(p);
}

/* Chunks are claimed dynamically, so a worker the OS does not schedule delays
 * nothing: the caller runs what is left.  Which thread runs a chunk never changes
 * its result.  A worker joins a job only while it is current, so the caller
 * returns once every chunk is claimed and no worker is inside the job. */
void
cg_rt_pool_parallel_for(void *pool, int64_t n, void (*fn)(void *, int64_t, int64_t), void *ctx)
{
	Pool *p = pool;
	if (!p || p->n < 2 || n < 2) {
		if (n > 0)
			fn(ctx, 0, n);
		return;
	}
	pthread_mutex_lock(&p->mu);
	p->fn = fn;
	p->ctx = ctx;
	p->total = n;
	p->chunks = n < 4 * p->n ? n : 4 * p->n;
	p->next = 0;
	uint_fast64_t g = atomic_fetch_add(&p->gen, 1) + 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	drain(p, g);
	for (int spins = 0; atomic_load(&p->busy) > 0; spins++)
		if (spins > 1000)
			sched_yield();
}

#ifdef CG_RT_ELIDE_NAMES
int elide_blob_check(const void *blob, uint64_t size, uint64_t model_hash, const void **payload);
int elide_blob_read_file(const char *path, void **blob, uint64_t *size);
void *elide_pool_create(int nthreads);
void elide_pool_destroy(void *pool);
void elide_pool_parallel_for(void *pool, int64_t n, void (*fn)(void *, int64_t, int64_t), void *ctx);

int
elide_blob_check(const void *blob, uint64_t size, uint64_t model_hash, const void **payload)
{
	return cg_rt_blob_check(blob, size, model_hash, payload);
}

int
elide_blob_read_file(const char *path, void **blob, uint64_t *size)
{
	return cg_rt_blob_read_file(path, blob, size);
}

void *
elide_pool_create(int nthreads)
{
	return cg_rt_pool_create(nthreads);
}

void
elide_pool_destroy(void *pool)
{
	cg_rt_pool_destroy(pool);
}

void
elide_pool_parallel_for(void *pool, int64_t n, void (*fn)(void *, int64_t, int64_t), void *ctx)
{
	cg_rt_pool_parallel_for(pool, n, fn, ctx);
}
#endif
