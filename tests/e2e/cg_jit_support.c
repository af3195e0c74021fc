/* cg_jit_support.c - see cg_jit_support.h. */
#include "tests/e2e/cg_jit_support.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

void
tj_reverse_pfor(void *pool, int64_t n, void (*fn)(void *, int64_t, int64_t), void *ctx)
{
	(void)pool;
	int64_t chunk = n > 3 ? n / 3 : 1;
	for (int64_t hi = n; hi > 0; hi -= chunk)
		fn(ctx, hi - chunk > 0 ? hi - chunk : 0, hi);
}

TJit *
tj_new(Module *m, bool fuse)
{
	CgOptions o = { .opt_level = 3, .fuse = fuse };
	return tj_new_opts(m, &o);
}

TJit *
tj_new_opts(Module *m, const CgOptions *o)
{
	Diag d;
	diag_init(&d, stderr);
	TJit *t = xcalloc(1, sizeof *t);
	t->r = cg_compile(m, o, &d);
	cr_assert(t->r, "cg_compile failed");
	char err[512];
	cr_assert(cg_optimize(t->r, 3, err, sizeof err), "%s", err);
	cr_assert(cg_blob(t->r, err, sizeof err), "%s", err);
	CgJitSym syms[8];
	uint32_t ns = cg_runtime_syms(syms, 8);
	t->j = cg_jit_new(t->r, syms, ns, err, sizeof err);
	cr_assert(t->j, "%s", err);
	void *(*create)(void) = (void *(*)(void))tj_sym(t, "create");
	t->ctx = create();
	cr_assert(t->ctx);
	int (*load)(void *, const void *, size_t, uint64_t)
		= (int (*)(void *, const void *, size_t, uint64_t))tj_sym(t, "load_weights_mem_abi");
	cr_assert_eq(load(t->ctx, t->r->blob, t->r->blob_size, t->r->abi_hash), ELIDE_OK);
	return t;
}

CgFn
tj_sym(TJit *t, const char *name)
{
	CgFn p = cg_jit_lookup(t->j, name);
	cr_assert(p, "no symbol '%s'", name);
	return p;
}

void
tj_free(TJit *t)
{
	void (*destroy)(void *) = (void (*)(void *))tj_sym(t, "destroy");
	destroy(t->ctx);
	cg_jit_free(t->j);
	cg_result_free(t->r);
	free(t);
}


int
tj_count_ops(const Module *m, Opcode code)
{
	int n = 0;
	for (uint32_t e = 0; e < m->nfuncs; e++)
		for (uint32_t i = 0; i < m->funcs[e]->nops; i++)
			n += m->funcs[e]->ops[i].code == code;
	return n;
}
