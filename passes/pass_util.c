/* pass_util.c - what passes share: rebuilding a function's op array (the one way
 * passes remove ops and redirect uses), finding and removing the policy statements
 * a pass realises, retyping a module after shapes changed, and the manifest notes
 * of a pass that removes parameters. */
#include "passes/passes.h"

#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool
pass_has_stmts(const Module *m, PolicyVerb verb)
{
	for (uint32_t i = 0; m->policy && i < m->policy->nstmts; i++)
		if (m->policy->stmts[i].verb == verb)
			return true;
	return false;
}

void
pass_drop_stmts(Module *m, PolicyVerb verb)
{
	Policy *p = m->policy;
	uint32_t n = 0;
	for (uint32_t i = 0; p && i < p->nstmts; i++)
		if (p->stmts[i].verb != verb)
			p->stmts[n++] = p->stmts[i];
	if (p)
		p->nstmts = n;
}

void
pass_add_notes(Module *m, const char *text)
{
	if (!text || !*text)
		return;
	const char *old = m->manifest_notes;
	m->manifest_notes = old && *old ? arena_printf(&m->arena, "%s%s%s", old, old[strlen(old) - 1] == '\n' ? "" : "\n",
	                                               text)
	                                : arena_strdup(&m->arena, text);
}

/* Follows replacements to their end (bounded: a cycle is a bug). */
static ValueId
resolve(const ValueId *repl, uint32_t nvals, ValueId v)
{
	for (uint32_t k = 0; repl && v < nvals && repl[v] != IR_NO_VALUE && repl[v] != v; k++) {
		if (k > nvals)
			ELIDE_ICE("cycle in value replacements");
		v = repl[v];
	}
	return v;
}

void
pass_rebuild_func(Module *m, Func *f, const bool *keep, const ValueId *repl)
{
	(void)m;
	ValueId *newid = xmalloc((f->nvals + 1) * sizeof *newid);
	for (uint32_t v = 0; v < f->nvals; v++)
		newid[v] = IR_NO_VALUE;
	Op *ops = xmalloc((f->nops + 1) * sizeof *ops);
	Value *vals = xcalloc(f->nops + 1, sizeof *vals);
	uint32_t n = 0;
	for (uint32_t i = 0; i < f->nops; i++) {
		if (keep && !keep[i])
			continue;
		Op op = f->ops[i];
		if (op.dst < f->nvals) {
			vals[n] = f->vals[op.dst];
			vals[n].uses = NULL;
			vals[n].nuses = 0;
			newid[op.dst] = n;
		}
		vals[n].def = n;
		op.dst = n;
		ops[n++] = op;
	}
	for (uint32_t i = 0; i < n; i++)
		for (uint32_t a = 0; a < ops[i].nargs; a++) {
			ValueId u = resolve(repl, f->nvals, ops[i].args[a]);
			ops[i].args[a] = u < f->nvals ? newid[u] : IR_NO_VALUE;
		}
	for (uint32_t v = 0; v < f->nvals; v++)
		free(f->vals[v].uses);
	free(f->ops);
	free(f->vals);
	f->ops = ops;
	f->vals = vals;
	f->nops = f->capops = n;
	f->nvals = f->capvals = n;
	free(newid);
}

bool
pass_retype(Module *m, char *err, size_t nerr)
{
	for (uint32_t fi = 0; fi < m->nfuncs; fi++) {
		Func *f = m->funcs[fi];
		for (uint32_t i = 0; i < f->nops; i++) {
			Op *o = &f->ops[i];
			Type t;
			if (o->code == OP_CONST)
				continue;
			if (!ir_infer_type(m, f, o, &t, err, nerr))
				return false;
			f->vals[o->dst].type = t;
		}
	}
	return true;
}

void
pass_notes_begin(PassNotes *pn, const Module *m)
{
	memset(pn, 0, sizeof *pn);
	pn->f = open_memstream(&pn->text, &pn->len);
	if (!pn->f)
		ELIDE_ICE("open_memstream failed");
	pn->params = pass_param_count(m);
	pn->layers = m->nlayers;
}

void
pass_notes_end(PassNotes *pn, Module *m, const char *pass, bool changed, bool ok)
{
	if (ok && changed) {
		int64_t after = pass_param_count(m);
		fprintf(pn->f, "%s: params %lld -> %lld (removed %lld), layers %d -> %d\n", pass, (long long)pn->params,
		        (long long)after, (long long)(pn->params - after), pn->layers, m->nlayers);
	}
	fclose(pn->f);
	if (ok && changed)
		pass_add_notes(m, pn->text);
	free(pn->text);
}

int64_t
pass_param_count(const Module *m)
{
	int64_t n = 0;
	for (uint32_t i = 0; i < m->nparams; i++)
		n += ir_type_numel(m->params[i].type);
	return n;
}

char *
pass_resolve_path(Arena *a, const char *base, const char *rel)
{
	if (!rel || rel[0] == '/' || !base || access(rel, R_OK) == 0)
		return arena_strdup(a, rel);
	char *b = xstrdup(base);
	char *r = arena_printf(a, "%s/%s", dirname(b), rel);
	free(b);
	return r;
}

int32_t
pass_pos_arg(const Func *f)
{
	for (uint32_t a = 0; a < f->nargs; a++)
		if (f->args[a].type.rank == 0 && f->args[a].type.dtype == DT_I32 && strcmp(f->args[a].name, "pos") == 0)
			return (int32_t)a;
	return f->nargs > 1 && f->args[1].type.rank == 0 && f->args[1].type.dtype == DT_I32 ? 1 : -1;
}

int32_t
pass_knob(Module *m, const char *name, DType dt, double dflt, double lo, double hi, Loc loc)
{
	int32_t k = ir_find_knob(m, name);
	if (k < 0)
		k = (int32_t)ir_add_knob(m, (Knob){ .name = name, .dtype = dt, .dflt = dflt, .lo = lo, .hi = hi, .loc = loc });
	return k;
}

int32_t
pass_stat(Module *m, const char *name, Loc loc)
{
	int32_t k = ir_find_stat(m, name);
	return k >= 0 ? k : (int32_t)ir_add_stat(m, name, loc);
}
