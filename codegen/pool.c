/* pool.c - a small pthread pool with the runtime's parallel-for contract, for the
 * in-process JIT (the generated code calls elide_pool_parallel_for; `elide run` binds
 * that name here).  Work is split into one contiguous chunk per thread, the caller
 * taking the first.  Workers spin briefly on a generation counter before sleeping,
 * since decode issues about a hundred short parallel loops per token. */
#include "codegen/codegen.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

typedef struct Pool {
	int n;                             /* threads, the caller included */
	pthread_t *th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	atomic_uint_fast64_t gen;          /* bumped once per parallel_for */
	atomic_int pending;                /* worker chunks not finished */
	atomic_bool stop;
	void (*fn)(void *, int64_t, int64_t);
	void *ctx;
	int64_t total;
} Pool;

typedef struct Worker {
	Pool *p;
	int id;
} Worker;

static void
run_chunk(Pool *p, int id)
{
	int64_t lo = p->total * id / p->n, hi = p->total * (id + 1) / p->n;
	if (lo < hi)
		p->fn(p->ctx, lo, hi);
}

static void *
worker(void *arg)
{
	Worker *w = arg;
	Pool *p = w->p;
	uint_fast64_t seen = 0;
	for (;;) {
		int spins = 0;
		while (atomic_load_explicit(&p->gen, memory_order_acquire) == seen && !atomic_load(&p->stop)) {
			if (++spins < 200000)
				continue;
			pthread_mutex_lock(&p->mu);
			while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
				pthread_cond_wait(&p->cv, &p->mu);
			pthread_mutex_unlock(&p->mu);
		}
		if (atomic_load(&p->stop))
			break;
		seen = atomic_load(&p->gen);
		run_chunk(p, w->id);
		atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
	}
	free(w);
	return NULL;
}

void *
cg_rt_pool_create(int nthreads)
{
	if (nthreads < 2)
		return NULL;
	Pool *p = xcalloc(1, sizeof *p);
	p->n = nthreads;
	p->th = xcalloc((size_t)nthreads, sizeof *p->th);
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	for (int i = 1; i < nthreads; i++) {
		Worker *w = xmalloc(sizeof *w);
		*w = (Worker){ p, i };
		if (pthread_create(&p->th[i], NULL, worker, w) != 0) {
			free(w);
			p->n = i;
			break;
		}
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

void
cg_rt_pool_parallel_for(void *pool, int64_t n, void (*fn)(void *, int64_t, int64_t), void *ctx)
{
	Pool *p = pool;
	if (!p || p->n < 2 || n < 2) {
		if (n > 0)
			fn(ctx, 0, n);
		return;
	}
	p->fn = fn;
	p->ctx = ctx;
	p->total = n;
	atomic_store(&p->pending, p->n - 1);
	pthread_mutex_lock(&p->mu);
	atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	run_chunk(p, 0);
	while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0)
		;
}
