/* run_jit.c - the JIT backend of `elide run`: compiles the module for the host
 * (default<O3>), links it in process through ORC (jit.c), makes a context with the
 * packed weights and calls entries by name through their NAME_ENTRY__call
 * trampolines.  ELIDE_THREADS sets the kernel threads (runtime pool). */
#include "codegen/codegen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct CgRun {
	Module *m;
	CgResult *r;
	CgJit *j;
	void *ctx;
	void (*destroy)(void *);
} CgRun;

/* The runtime functions the generated code calls, bound to this process. */
static uint32_t
runtime_syms(CgJitSym *s)
{
	uint32_t n = 0;
	s[n++] = (CgJitSym){ "elide_blob_check", (CgFn)cg_rt_blob_check };
	s[n++] = (CgJitSym){ "elide_blob_read_file", (CgFn)cg_rt_blob_read_file };
	s[n++] = (CgJitSym){ "elide_pool_create", (CgFn)cg_rt_pool_create };
	s[n++] = (CgJitSym){ "elide_pool_destroy", (CgFn)cg_rt_pool_destroy };
	s[n++] = (CgJitSym){ "elide_pool_parallel_for", (CgFn)cg_rt_pool_parallel_for };
	return n;
}

void *
cg_run_open(Module *m, char *err, size_t nerr)
{
	Diag d;
	diag_init(&d, stderr);
	CgOptions o = { .opt_level = 3, .fuse = true };
	CgRun *run = xcalloc(1, sizeof *run);
	run->m = m;
	run->r = cg_compile(m, &o, &d);
	if (!run->r) {
		snprintf(err, nerr, "compilation failed");
		free(run);
		return NULL;
	}
	CgJitSym syms[8];
	uint32_t ns = runtime_syms(syms);
	if (!cg_optimize(run->r, 3, err, nerr) || !(run->j = cg_jit_new(run->r, syms, ns, err, nerr))) {
		cg_result_free(run->r);
		free(run);
		return NULL;
	}
	void *(*create)(void) = (void *(*)(void))cg_jit_lookup(run->j, "create");
	int (*load)(void *, const void *, size_t) = (int (*)(void *, const void *, size_t))cg_jit_lookup(run->j, "load_weights_mem");
	int (*threads)(void *, int) = (int (*)(void *, int))cg_jit_lookup(run->j, "set_threads");
	run->destroy = (void (*)(void *))cg_jit_lookup(run->j, "destroy");
	run->ctx = create ? create() : NULL;
	int st = run->ctx ? load(run->ctx, run->r->blob, run->r->blob_size) : ELIDE_E_NOMEM;
	const char *env = getenv("ELIDE_THREADS");
	if (st == ELIDE_OK && env && atoi(env) > 1)
		st = threads(run->ctx, atoi(env));
	if (st != ELIDE_OK) {
		snprintf(err, nerr, "cannot set up the compiled model (status %d)", st);
		cg_run_close(run);
		return NULL;
	}
	return run;
}

bool
cg_run_call(void *p, const char *entry, const int32_t *tokens, int64_t ntokens, int32_t pos, float *out,
            char *err, size_t nerr)
{
	CgRun *run = p;
	const Func *f = ir_find_func(run->m, entry);
	char name[256];
	snprintf(name, sizeof name, "%s__call", entry);
	int (*call)(void *, const int64_t *, void *) = f ? (int (*)(void *, const int64_t *, void *))cg_jit_lookup(run->j, name) : NULL;
	if (!call) {
		snprintf(err, nerr, "no entry '%s'", entry);
		return false;
	}
	int64_t argv[34];
	unsigned k = 0;
	for (uint32_t i = 0; i < f->nargs && i < 16; i++) {
		const Arg *a = &f->args[i];
		if (a->type.rank == 0) {
			bool is_pos = strcmp(a->name, "pos") == 0 || (i == 1 && a->type.rank == 0);
			argv[k++] = is_pos ? pos : (ntokens ? tokens[0] : 0);
		} else {
			argv[k++] = (int64_t)(intptr_t)tokens;
			argv[k++] = ntokens;
		}
	}
	int st = call(run->ctx, argv, out);
	if (st != ELIDE_OK) {
		snprintf(err, nerr, "'%s' returned status %d (%s)", entry, st, cg_status_str(st));
		return false;
	}
	return true;
}

void
cg_run_close(void *p)
{
	CgRun *run = p;
	if (!run)
		return;
	if (run->ctx && run->destroy)
		run->destroy(run->ctx);
	cg_jit_free(run->j);
	cg_result_free(run->r);
	free(run);
}

const char *
cg_status_str(int st)
{
	static const char *const s[] = { "ok", "bad argument", "no weights loaded", "token out of range",
		"position out of range", "bad sequence length", "misaligned weights", "out of memory",
		"not a weight blob", "blob of another model", "checksum mismatch", "cannot read file" };
	return st >= 0 && st < (int)(sizeof s / sizeof s[0]) ? s[st] : "unknown status";
}
