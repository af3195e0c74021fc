/* pool.c - the fork/join thread pool behind elide_pool_parallel_for.
 * Generated code issues a few hundred short parallel loops per decoded token, so the
 * fork/join must cost microseconds:
 *   1. The caller writes fn/ctx/n, then publishes one 64-bit job word
 *      (generation << 32 | chunks << 23 | claims) and bumps a 32-bit futex word.
 *   2. Workers spin on the futex word for a short time after each job (about 200 us)
 *      and only then sleep in futex_wait; the caller calls futex_wake only when some
 *      worker sleeps, so back-to-back loops make no system call.
 *   3. Everybody, the caller included, claims chunks with a CAS on the job word; a claim
 *      succeeds only while the word carries the claimer's generation, so a late worker
 *      never runs a chunk of a later job.  A descheduled worker delays nothing: the
 *      others take its chunk.  With at most CLAIM_BITS chunks the claims are a
 *      bitmask and each thread first takes its own chunk (the caller chunk 0, worker
 *      i chunk i + 1): a thread then works on the same rows of a weight matrix from
 *      one token to the next, and keeps them in its own cache (a 768 x 768 GEMV on
 *      two threads: 20 -> 15 us).  With more chunks the claims are a counter.
 *   4. Each finished chunk increments `done`; the caller spins (then yields) until all
 *      chunks of its job are done.
 * Chunks are contiguous and near-equal: chunk c of C over [0, n) starts at
 * c * (n / C) + min(c, n % C). */
#include "runtime/elide_rt.h"

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

#define SPIN_NS 200000u      /* a worker spins this long after a job before sleeping */
#define CALLER_SPIN_NS 50000u /* the caller spins this long before yielding the CPU */
#define CLAIM_BITS 23         /* job word: bits 0..22 claims, 23..31 chunks, 32..63 generation */
#define CLAIM_MASK ((1u << CLAIM_BITS) - 1)

typedef struct Worker {
	struct elide_pool *pool;
	pthread_t th;
} Worker;

struct elide_pool {
	alignas(64) _Atomic uint64_t job;  /* gen << 32 | chunks << 23 | claims (see CLAIM_BITS) */
	alignas(64) _Atomic uint32_t seq;  /* futex word: the generation last published */
	_Atomic int nsleep;                /* workers in (or entering) futex_wait */
	_Atomic int stop;                  /* set by destroy */
	alignas(64) _Atomic int64_t done;  /* chunks of the current job finished */
	alignas(64) elide_task_fn fn;      /* the current job, valid while it runs */
	void *ctx;
	int64_t total;                     /* iterations of the current job */
	uint32_t gen;                      /* caller-owned: generation of the last job */
	int n;                             /* threads, the caller included */
	int nworkers;                      /* started workers (n - 1) */
	Worker *workers;                   /* [n - 1] */
};

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static void
futex_wait(_Atomic uint32_t *w, uint32_t val)
{
#ifdef __linux__
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
#else
	(void)w;
	(void)val;
	struct timespec ts = { 0, 50000 };
	nanosleep(&ts, NULL);
#endif
}

static void
futex_wake_all(_Atomic uint32_t *w)
{
#ifdef __linux__
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
	(void)w;
#endif
}

/* The chunk a thread claims next in job word j (own first when the claims are a
 * bitmask); false when none is left. */
static bool
next_chunk(uint64_t j, uint32_t own, uint32_t *c, uint64_t *claimed)
{
	uint32_t nch = (uint32_t)(j >> CLAIM_BITS) & 0x1ff, claims = (uint32_t)j & CLAIM_MASK;
	if (nch > CLAIM_BITS) { /* a counter of the chunks handed out */
		*c = claims;
		*claimed = j + 1;
		return claims < nch;
	}
	uint32_t open = ~claims & ((1u << nch) - 1);
	if (!open)
		return false;
	*c = own < nch && (open >> own & 1) ? own : (uint32_t)__builtin_ctz(open);
	*claimed = j | 1ull << *c;
	return true;
}

/* Claims and runs chunks of generation gen until none is left; chunk `own` first. */
static void
run_chunks(struct elide_pool *p, uint32_t gen, uint32_t own)
{
	for (;;) {
		uint64_t j = atomic_load_explicit(&p->job, memory_order_acquire), next;
		uint32_t c;
		for (;;) {
			if ((uint32_t)(j >> 32) != gen || !next_chunk(j, own, &c, &next))
				return;
			if (atomic_compare_exchange_weak_explicit(&p->job, &j, next, memory_order_acq_rel,
			                                          memory_order_acquire))
				break;
		}
		uint32_t nch = (uint32_t)(j >> CLAIM_BITS) & 0x1ff;
		int64_t base = p->total / nch, rem = p->total % nch;
		int64_t lo = (int64_t)c * base + (c < rem ? (int64_t)c : rem);
		int64_t hi = lo + base + (c < rem ? 1 : 0);
		p->fn(p->ctx, lo, hi);
		atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
	}
}

static void *
worker_main(void *arg)
{
	struct elide_pool *p = ((Worker *)arg)->pool;
	uint32_t own = (uint32_t)((Worker *)arg - p->workers) + 1; /* the caller's is 0 */
	/* generation 0 is the state at creation: a worker that starts late still joins
	 * the jobs published before it ran */
	uint32_t seen = 0;
	for (;;) {
		uint32_t g;
		uint64_t t0 = 0;
		unsigned spins = 0;
		while ((g = atomic_load_explicit(&p->seq, memory_order_acquire)) == seen) {
			if (atomic_load_explicit(&p->stop, memory_order_relaxed))
				return NULL;
			cpu_relax();
			if (++spins % 64 != 0)
				continue;
			uint64_t now = elide_now_ns();
			if (t0 == 0)
				t0 = now;
			if (now - t0 < SPIN_NS)
				continue;
			/* Sleep.  nsleep is raised before the re-check of seq, and the caller
			 * bumps seq before it reads nsleep (both seq_cst), so a wake-up cannot
			 * be lost; futex_wait itself returns at once if seq moved. */
			atomic_fetch_add(&p->nsleep, 1);
			if (atomic_load(&p->seq) == seen && !atomic_load(&p->stop))
				futex_wait(&p->seq, seen);
			atomic_fetch_sub(&p->nsleep, 1);
			t0 = 0;
		}
		if (atomic_load(&p->stop))
			return NULL;
		seen = g;
		run_chunks(p, g, own);
	}
}

static int
threads_from_env(void)
{
	const char *s = getenv("ELIDE_THREADS");
	if (!s || !*s)
		return 1;
	char *end;
	long v = strtol(s, &end, 10);
	if (*end != 0 || v < 1)
		return 1;
	return v > ELIDE_POOL_MAX_THREADS ? ELIDE_POOL_MAX_THREADS : (int)v;
}

elide_pool *
elide_pool_create(int nthreads)
{
	if (nthreads <= 0)
		nthreads = threads_from_env();
	if (nthreads > ELIDE_POOL_MAX_THREADS)
		nthreads = ELIDE_POOL_MAX_THREADS;
	struct elide_pool *p = aligned_alloc(64, elide_align_up(sizeof *p, 64));
	if (!p)
		return NULL;
	memset(p, 0, sizeof *p);
	atomic_init(&p->job, 0);
	atomic_init(&p->seq, 0);
	atomic_init(&p->nsleep, 0);
	atomic_init(&p->stop, 0);
	atomic_init(&p->done, 0);
	p->n = nthreads;
	if (nthreads > 1) {
		p->workers = calloc((size_t)nthreads - 1, sizeof *p->workers);
		if (!p->workers) {
			free(p);
			return NULL;
		}
	}
	for (int i = 0; i < nthreads - 1; i++) {
		p->workers[i].pool = p;
		if (pthread_create(&p->workers[i].th, NULL, worker_main, &p->workers[i]) != 0) {
			elide_pool_destroy(p);
			return NULL;
		}
		p->nworkers = i + 1;
	}
	return p;
}

void
elide_pool_destroy(elide_pool *p)
{
	if (!p)
		return;
	atomic_store(&p->stop, 1);
	atomic_fetch_add(&p->seq, 1);
	futex_wake_all(&p->seq);
	for (int i = 0; i < p->nworkers; i++)
		pthread_join(p->workers[i].th, NULL);
	free(p->workers);
	free(p);
}

int
elide_pool_threads(const elide_pool *p)
{
	return p ? p->n : 1;
}

void
elide_pool_parallel_for(void *pool, int64_t n, elide_task_fn fn, void *ctx)
{
	struct elide_pool *p = pool;
	if (n <= 0 || !fn)
		return;
	if (!p || p->n < 2 || n < 2) {
		fn(ctx, 0, n);
		return;
	}
	uint32_t nch = (uint32_t)(n < p->n ? n : p->n);
	p->fn = fn;
	p->ctx = ctx;
	p->total = n;
	atomic_store_explicit(&p->done, 0, memory_order_relaxed);
	uint32_t gen = ++p->gen;
	atomic_store_explicit(&p->job, (uint64_t)gen << 32 | (uint64_t)nch << CLAIM_BITS, memory_order_release);
	atomic_store(&p->seq, gen);
	if (atomic_load(&p->nsleep) > 0)
		futex_wake_all(&p->seq);
	run_chunks(p, gen, 0);
	uint64_t t0 = 0;
	unsigned spins = 0;
	while (atomic_load_explicit(&p->done, memory_order_acquire) < (int64_t)nch) {
		cpu_relax();
		if (++spins % 64 != 0)
			continue;
		uint64_t now = elide_now_ns();
		if (t0 == 0)
			t0 = now;
		else if (now - t0 > CALLER_SPIN_NS)
			sched_yield();
	}
}
