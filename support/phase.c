/* phase.c - the timing of the compiler's phases for `elide compile -v`: wall time,
 * CPU time (user + sys, CLOCK_PROCESS_CPUTIME_ID, so a loaded machine shows how much
 * of the wall time was the compiler's own) and peak RSS (getrusage) per phase, and a
 * progress line on a terminal for the long ones: a percentage where the phase
 * reports its progress (phase_progress), else the time elapsed, redrawn by a thread
 * that lives from phase_begin_long to the phase's end. */
#include "support/support.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct Ticker {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	Phases *p;
} Ticker;

static double
now(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long
peak_kb(void)
{
	struct rusage ru;
	return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
}

void
phases_init(Phases *p, FILE *out, bool progress)
{
	*p = (Phases){ .out = out, .progress = progress, .cur = -1 };
	p->start_wall = now(CLOCK_MONOTONIC);
	p->start_cpu = now(CLOCK_PROCESS_CPUTIME_ID);
}

static void
clear_line(Phases *p)
{
	if (p->drawn) {
		fputs("\r\033[K", p->out);
		fflush(p->out);
		p->drawn = false;
	}
}

static void *
tick(void *arg)
{
	Ticker *t = arg;
	Phases *p = t->p;
	pthread_mutex_lock(&t->mu);
	while (!t->stop) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 250000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&t->cv, &t->mu, &until);
		if (t->stop)
			break;
		fprintf(p->out, "\r\033[Kelide: %s (%.1f s)", p->rows[p->cur].name, now(CLOCK_MONOTONIC) - p->wall0);
		fflush(p->out);
		p->drawn = true;
	}
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

static void
ticker_stop(Phases *p)
{
	Ticker *t = p->ticker;
	if (!t)
		return;
	pthread_mutex_lock(&t->mu);
	t->stop = true;
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
	pthread_join(t->thread, NULL);
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->mu);
	free(t);
	p->ticker = NULL;
}

void
phase_end(Phases *p)
{
	if (!p || p->cur < 0)
		return;
	ticker_stop(p);
	PhaseRow *r = &p->rows[p->cur];
	r->wall += now(CLOCK_MONOTONIC) - p->wall0;
	r->cpu += now(CLOCK_PROCESS_CPUTIME_ID) - p->cpu0;
	r->peak_kb = peak_kb();
	p->cur = -1;
	clear_line(p);
}

void
phase_begin(Phases *p, const char *name)
{
	if (!p)
		return;
	phase_end(p);
	int i = 0;
	while (i < p->nrows && strcmp(p->rows[i].name, name) != 0)
		i++;
	if (i == p->nrows) {
		if (p->nrows == PHASE_MAX)
			return;
		p->rows[p->nrows++] = (PhaseRow){ .name = name };
	}
	p->cur = i;
	p->wall0 = now(CLOCK_MONOTONIC);
	p->cpu0 = now(CLOCK_PROCESS_CPUTIME_ID);
	p->last_draw = 0;
}

void
phase_begin_long(Phases *p, const char *name)
{
	phase_begin(p, name);
	if (!p || !p->progress || p->cur < 0)
		return;
	Ticker *t = calloc(1, sizeof *t);
	if (!t)
		return;
	t->p = p;
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->cv, NULL);
	/* the ticker starts with every signal blocked, so that SIGINT/SIGTERM always reach
	 * the compiling thread, whose output set holds them while it commits */
	sigset_t all, prev;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &prev);
	int rc = pthread_create(&t->thread, NULL, tick, t);
	pthread_sigmask(SIG_SETMASK, &prev, NULL);
	if (rc != 0) {
		pthread_cond_destroy(&t->cv);
		pthread_mutex_destroy(&t->mu);
		free(t);
		return;
	}
	p->ticker = t;
}

void
phase_progress(Phases *p, uint64_t done, uint64_t total)
{
	if (!p || !p->progress || p->cur < 0 || total == 0)
		return;
	double t = now(CLOCK_MONOTONIC);
	if (t - p->last_draw < 0.1 && done < total)
		return;
	p->last_draw = t;
	fprintf(p->out, "\r\033[Kelide: %s %3d%% (%.1f s)", p->rows[p->cur].name, (int)(100.0 * (double)done / (double)total),
	        t - p->wall0);
	fflush(p->out);
	p->drawn = true;
}

void
phases_report(Phases *p)
{
	if (!p)
		return;
	phase_end(p);
	double wall = now(CLOCK_MONOTONIC) - p->start_wall, cpu = now(CLOCK_PROCESS_CPUTIME_ID) - p->start_cpu;
	fprintf(p->out, "elide: %-22s %9s %9s %10s\n", "phase", "wall ms", "cpu ms", "peak MiB");
	for (int i = 0; i < p->nrows; i++) {
		const PhaseRow *r = &p->rows[i];
		fprintf(p->out, "elide:   %-20s %9.1f %9.1f %10.1f\n", r->name, r->wall * 1e3, r->cpu * 1e3,
		        (double)r->peak_kb / 1024.0);
	}
	fprintf(p->out, "elide: %-22s %9.1f %9.1f %10.1f\n", "total", wall * 1e3, cpu * 1e3, (double)peak_kb() / 1024.0);
}
