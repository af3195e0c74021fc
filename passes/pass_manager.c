/* pass_manager.c - runs pipelines of passes by name, with the options of `elide opt`.
 * Algorithm:
 *   1. split the pipeline at commas and look every name up in pass_table (from
 *      passes.def), reporting all unknown names before running anything; the name
 *      `default` stands for the default pipeline of the module (pipeline.c);
 *   2. run the passes in order; after each, if asked, verify the module (stop at the
 *      first invalid IR, naming the pass), print it (--print-after, -all) and record
 *      its wall time;
 *   3. print the timing table (--time-passes).
 * The utilities passes share are in pass_util.c and pass_layers.c. */
#include "passes/passes.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

const PassInfo pass_table[] = {
#define PASS(id, name, desc) { name, pass_##id, desc },
#include "passes/passes.def"
#undef PASS
};
const unsigned pass_count = sizeof pass_table / sizeof pass_table[0];

/* Whether a and b name the same pass, '-' and '_' being the same letter. */
static bool
same_name(const char *a, const char *b, size_t nb)
{
	size_t i = 0;
	for (; i < nb && a[i]; i++) {
		char x = a[i] == '_' ? '-' : a[i], y = b[i] == '_' ? '-' : b[i];
		if (x != y)
			return false;
	}
	return i == nb && a[i] == '\0';
}

static const PassInfo *
find_n(const char *name, size_t n)
{
	for (unsigned i = 0; i < pass_count; i++)
		if (same_name(pass_table[i].name, name, n))
			return &pass_table[i];
	return NULL;
}

const PassInfo *
pass_find(const char *name)
{
	return find_n(name, strlen(name));
}

/* Whether `list` (comma-separated) names pass p. */
static bool
listed(const char *list, const PassInfo *p)
{
	for (const char *s = list; s && *s;) {
		const char *e = strchr(s, ',');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if (find_n(s, n) == p || (n == 3 && strncmp(s, "all", 3) == 0))
			return true;
		s = e ? e + 1 : s + n;
	}
	return false;
}

static double
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

bool
pass_run_pipeline(Module *m, const char *pipeline, const PassOptions *o, Diag *d)
{
	PassOptions none = { 0 };
	if (!o)
		o = &none;
	FILE *dump = o->dump ? o->dump : stderr;
	const PassInfo **run = NULL;
	uint32_t n = 0, cap = 0;
	bool ok = true;
	/* 1. names */
	for (const char *s = pipeline; s && *s;) {
		const char *e = strchr(s, ',');
		size_t len = e ? (size_t)(e - s) : strlen(s);
		const PassInfo *p = len ? find_n(s, len) : NULL;
		if (len == 7 && strncmp(s, "default", 7) == 0) {
			/* the default pipeline for this module (pipeline.c), in place */
			for (const char *t = pass_default_pipeline(m); *t;) {
				const char *te = strchr(t, ',');
				size_t tl = te ? (size_t)(te - t) : strlen(t);
				VEC_PUSH(run, n, cap);
				run[n++] = find_n(t, tl);
				t = te ? te + 1 : t + tl;
			}
		} else if (!p) {
			diag_error(d, (Loc){ 0 }, "unknown pass '%.*s' (passes: see 'elide opt --help')", (int)len, s);
			ok = false;
		} else {
			VEC_PUSH(run, n, cap);
			run[n++] = p;
		}
		s = e ? e + 1 : s + len;
	}
	for (const char *s = o->skip; s && *s;) {
		const char *e = strchr(s, ',');
		size_t len = e ? (size_t)(e - s) : strlen(s);
		if (!find_n(s, len)) {
			diag_error(d, (Loc){ 0 }, "unknown pass '%.*s' in --no-pass", (int)len, s);
			ok = false;
		}
		s = e ? e + 1 : s + len;
	}
	for (const char *s = o->print_after; s && *s;) {
		const char *e = strchr(s, ',');
		size_t len = e ? (size_t)(e - s) : strlen(s);
		if (!find_n(s, len) && !(len == 3 && strncmp(s, "all", 3) == 0)) {
			diag_error(d, (Loc){ 0 }, "unknown pass '%.*s' in --print-after", (int)len, s);
			ok = false;
		}
		s = e ? e + 1 : s + len;
	}
	uint32_t kept = 0; /* --no-pass */
	for (uint32_t i = 0; i < n; i++)
		if (!o->skip || !listed(o->skip, run[i]))
			run[kept++] = run[i];
	n = kept;
	double *ms = xcalloc(n + 1, sizeof *ms);
	/* 2. run */
	for (uint32_t i = 0; ok && i < n; i++) {
		double t0 = now_ms();
		ok = run[i]->run(m, d);
		ms[i] = now_ms() - t0;
		if (!ok) {
			diag_error(d, (Loc){ 0 }, "pass '%s' failed", run[i]->name);
			break;
		}
		if (o->verify_each && !ir_verify(m, d)) {
			diag_error(d, (Loc){ 0 }, "the IR is invalid after pass '%s'", run[i]->name);
			ok = false;
		}
		if (o->print_after_all || listed(o->print_after, run[i])) {
			fprintf(dump, "// -----// IR after %s //----- //\n", run[i]->name);
			ir_print_module(dump, m);
		}
	}
	/* 3. timings */
	if (o->time_passes) {
		double total = 0;
		for (uint32_t i = 0; i < n; i++)
			total += ms[i];
		fprintf(dump, "===-------------------------------------===\n"
		              "  elide pass execution timing report\n"
		              "===-------------------------------------===\n"
		              "  total: %.3f ms\n\n  %10s  %6s  %s\n", total, "wall (ms)", "%", "pass");
		for (uint32_t i = 0; i < n; i++)
			fprintf(dump, "  %10.3f  %5.1f%%  %s\n", ms[i], total > 0 ? 100.0 * ms[i] / total : 0.0, run[i]->name);
	}
	free(ms);
	free(run);
	return ok;
}
