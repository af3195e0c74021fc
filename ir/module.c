/* module.c - construction of modules, functions, params, state and ops; use lists;
 * deep copies.  Also home of the op tables generated from ops.def. */
#include "ir/ir.h"

#include <stdlib.h>
#include <string.h>

const char *const ir_op_names[OP_COUNT] = {
#define OP(e, name, arity, flags, ia, fa, opt) name,
#include "ir/ops.def"
#undef OP
};
const int ir_op_arity[OP_COUNT] = {
#define OP(e, name, arity, flags, ia, fa, opt) arity,
#include "ir/ops.def"
#undef OP
};
const unsigned ir_op_flags[OP_COUNT] = {
#define OP(e, name, arity, flags, ia, fa, opt) flags,
#include "ir/ops.def"
#undef OP
};
const IrAttrSpec ir_op_attrs[OP_COUNT] = {
#define OP(e, name, arity, flags, ia_, fa_, opt_) { .ia = ia_, .fa = fa_, .optional = opt_ },
#include "ir/ops.def"
#undef OP
};

int
ir_op_from_name(const char *s)
{
	for (int i = 0; i < OP_COUNT; i++)
		if (strcmp(s, ir_op_names[i]) == 0)
			return i;
	return -1;
}

Module *
ir_new_module(const char *name)
{
	Module *m = xcalloc(1, sizeof *m);
	m->name = arena_strdup(&m->arena, name);
	return m;
}

void
ir_free_module(Module *m)
{
	if (!m)
		return;
	for (uint32_t i = 0; i < m->nparams; i++) {
		free(m->params[i].data);
		free(m->params[i].qdata);
	}
	for (uint32_t i = 0; i < m->nfuncs; i++) {
		Func *f = m->funcs[i];
		for (uint32_t v = 0; v < f->nvals; v++)
			free(f->vals[v].uses);
		free(f->ops);
		free(f->vals);
	}
	free(m->params);
	free(m->states);
	free(m->knobs);
	free(m->stats);
	free(m->funcs);
	free(m->effects);
	arena_free(&m->arena);
	free(m);
}

void
ir_add_effect(Module *m, PolicyEffect e)
{
	VEC_PUSH(m->effects, m->neffects, m->capeffects);
	m->effects[m->neffects++] = e;
}

void
ir_policy_snapshot(Module *m)
{
	m->stmts_written = NULL;
	m->nstmts_written = 0;
	if (!m->policy || !m->policy->nstmts)
		return;
	m->stmts_written = arena_alloc(&m->arena, m->policy->nstmts * sizeof *m->stmts_written);
	memcpy(m->stmts_written, m->policy->stmts, m->policy->nstmts * sizeof *m->stmts_written);
	m->nstmts_written = m->policy->nstmts;
}

uint32_t
ir_add_param(Module *m, const char *name, const char *source, Type t, int32_t layer, Loc loc)
{
	VEC_PUSH(m->params, m->nparams, m->capparams);
	m->params[m->nparams] = (Param){
		.name = arena_strdup(&m->arena, name),
		.source = source ? arena_strdup(&m->arena, source) : NULL,
		.type = t,
		.layer = layer,
		.loc = loc,
	};
	return m->nparams++;
}

int32_t
ir_find_param(const Module *m, const char *name)
{
	for (uint32_t i = 0; i < m->nparams; i++)
		if (strcmp(m->params[i].name, name) == 0)
			return (int32_t)i;
	return -1;
}

uint32_t
ir_add_state(Module *m, State s)
{
	VEC_PUSH(m->states, m->nstates, m->capstates);
	s.name = arena_strdup(&m->arena, s.name);
	m->states[m->nstates] = s;
	return m->nstates++;
}

uint32_t
ir_add_knob(Module *m, Knob k)
{
	VEC_PUSH(m->knobs, m->nknobs, m->capknobs);
	k.name = arena_strdup(&m->arena, k.name);
	m->knobs[m->nknobs] = k;
	return m->nknobs++;
}

uint32_t
ir_add_stat(Module *m, const char *name, Loc loc)
{
	VEC_PUSH(m->stats, m->nstats, m->capstats);
	m->stats[m->nstats] = (StatSlot){ .name = arena_strdup(&m->arena, name), .loc = loc };
	return m->nstats++;
}

int32_t
ir_find_knob(const Module *m, const char *name)
{
	for (uint32_t i = 0; i < m->nknobs; i++)
		if (strcmp(m->knobs[i].name, name) == 0)
			return (int32_t)i;
	return -1;
}

int32_t
ir_find_stat(const Module *m, const char *name)
{
	for (uint32_t i = 0; i < m->nstats; i++)
		if (strcmp(m->stats[i].name, name) == 0)
			return (int32_t)i;
	return -1;
}

/* The Func struct itself lives in the arena; its op and value arrays are freed. */
void
ir_remove_func(Module *m, Func *f)
{
	uint32_t k = 0;
	for (uint32_t i = 0; i < m->nfuncs; i++)
		if (m->funcs[i] != f)
			m->funcs[k++] = m->funcs[i];
	if (k == m->nfuncs)
		return;
	m->nfuncs = k;
	for (uint32_t v = 0; v < f->nvals; v++)
		free(f->vals[v].uses);
	free(f->ops);
	free(f->vals);
	f->ops = NULL;
	f->vals = NULL;
	f->nops = f->nvals = 0;
}

Func *
ir_new_func(Module *m, const char *name, FuncKind kind, Loc loc)
{
	Func *f = arena_alloc(&m->arena, sizeof *f);
	f->name = arena_strdup(&m->arena, name);
	f->kind = kind;
	f->loc = loc;
	VEC_PUSH(m->funcs, m->nfuncs, m->capfuncs);
	m->funcs[m->nfuncs++] = f;
	return f;
}

Func *
ir_find_func(const Module *m, const char *name)
{
	for (uint32_t i = 0; i < m->nfuncs; i++)
		if (strcmp(m->funcs[i]->name, name) == 0)
			return m->funcs[i];
	return NULL;
}

void
ir_func_add_arg(Module *m, Func *f, const char *name, Type t)
{
	Arg *a = arena_alloc(&m->arena, (f->nargs + 1) * sizeof *a);
	if (f->nargs)
		memcpy(a, f->args, f->nargs * sizeof *a);
	a[f->nargs] = (Arg){ .name = arena_strdup(&m->arena, name), .type = t };
	f->args = a;
	f->nargs++;
}

int64_t
ir_config_get(const Module *m, const char *name, int64_t dflt)
{
	for (uint32_t i = 0; i < m->config.n; i++)
		if (strcmp(m->config.names[i], name) == 0)
			return m->config.values[i];
	return dflt;
}

void
ir_config_set(Module *m, const char *name, int64_t v)
{
	for (uint32_t i = 0; i < m->config.n; i++)
		if (strcmp(m->config.names[i], name) == 0) {
			m->config.values[i] = v;
			return;
		}
	if (m->config.n == sizeof m->config.values / sizeof m->config.values[0])
		ELIDE_ICE("too many model constants");
	m->config.names[m->config.n] = arena_strdup(&m->arena, name);
	m->config.values[m->config.n++] = v;
}

ValueId
ir_emit(Module *m, Func *f, Opcode code, Type t, const ValueId *args, uint32_t nargs, Loc loc)
{
	(void)m;
	if (nargs > IR_MAX_OPERANDS)
		ELIDE_ICE("too many operands");
	VEC_PUSH(f->ops, f->nops, f->capops);
	VEC_PUSH(f->vals, f->nvals, f->capvals);
	ValueId v = f->nvals++;
	f->vals[v] = (Value){ .type = t, .def = f->nops };
	Op *op = &f->ops[f->nops++];
	*op = (Op){ .code = code, .dst = v, .nargs = (uint8_t)nargs, .layer = -1, .loc = loc };
	if (nargs)
		memcpy(op->args, args, nargs * sizeof *args);
	return v;
}

void
ir_compute_uses(Module *m, Func *f)
{
	(void)m;
	for (uint32_t v = 0; v < f->nvals; v++) {
		free(f->vals[v].uses);
		f->vals[v].uses = NULL;
		f->vals[v].nuses = 0;
	}
	for (uint32_t i = 0; i < f->nops; i++)
		for (uint32_t a = 0; a < f->ops[i].nargs; a++)
			if (f->ops[i].args[a] < f->nvals)
				f->vals[f->ops[i].args[a]].nuses++;
	for (uint32_t v = 0; v < f->nvals; v++) {
		f->vals[v].uses = f->vals[v].nuses ? xmalloc(f->vals[v].nuses * sizeof(uint32_t)) : NULL;
		f->vals[v].nuses = 0;
	}
	for (uint32_t i = 0; i < f->nops; i++)
		for (uint32_t a = 0; a < f->ops[i].nargs; a++) {
			ValueId u = f->ops[i].args[a];
			if (u < f->nvals)
				f->vals[u].uses[f->vals[u].nuses++] = i;
		}
}

static Func *
clone_func(Module *dst, const Func *src)
{
	Func *f = ir_new_func(dst, src->name, src->kind, src->loc);
	for (uint32_t i = 0; i < src->nargs; i++)
		ir_func_add_arg(dst, f, src->args[i].name, src->args[i].type);
	f->nrets = src->nrets;
	f->rets = arena_alloc(&dst->arena, (src->nrets + 1) * sizeof *f->rets);
	memcpy(f->rets, src->rets, src->nrets * sizeof *f->rets);
	f->nops = f->capops = src->nops;
	f->ops = xmalloc((src->nops + 1) * sizeof *f->ops);
	memcpy(f->ops, src->ops, src->nops * sizeof *f->ops);
	f->nvals = f->capvals = src->nvals;
	f->vals = xmalloc((src->nvals + 1) * sizeof *f->vals);
	memcpy(f->vals, src->vals, src->nvals * sizeof *f->vals);
	for (uint32_t v = 0; v < f->nvals; v++) {
		f->vals[v].uses = NULL;
		f->vals[v].nuses = 0;
		if (src->vals[v].name)
			f->vals[v].name = arena_strdup(&dst->arena, src->vals[v].name);
	}
	return f;
}

Module *
ir_clone_module(const Module *m)
{
	Module *c = ir_new_module(m->name);
	c->nlayers = m->nlayers;
	c->config = m->config;
	for (uint32_t i = 0; i < m->config.n; i++)
		c->config.names[i] = arena_strdup(&c->arena, m->config.names[i]);
	for (uint32_t i = 0; i < m->nparams; i++) {
		const Param *p = &m->params[i];
		uint32_t k = ir_add_param(c, p->name, p->source, p->type, p->layer, p->loc);
		c->params[k].hash = p->hash;
		if (p->data) {
			size_t n = (size_t)ir_type_numel(p->type) * sizeof(float);
			c->params[k].data = memcpy(xmalloc(n), p->data, n);
		}
		c->params[k].format = p->format;
		c->params[k].group = p->group;
		if (p->qdata)
			c->params[k].qdata = memcpy(xmalloc(ir_quant_bytes(p)), p->qdata, ir_quant_bytes(p));
	}
	for (uint32_t i = 0; i < m->nstates; i++)
		ir_add_state(c, m->states[i]);
	for (uint32_t i = 0; i < m->nknobs; i++)
		ir_add_knob(c, m->knobs[i]);
	for (uint32_t i = 0; i < m->nstats; i++)
		ir_add_stat(c, m->stats[i].name, m->stats[i].loc);
	for (uint32_t i = 0; i < m->nfuncs; i++)
		clone_func(c, m->funcs[i]);
	c->policy = m->policy; /* policies are immutable once built; sharing is safe while m lives */
	c->weights_path = m->weights_path ? arena_strdup(&c->arena, m->weights_path) : NULL;
	c->manifest_notes = m->manifest_notes ? arena_strdup(&c->arena, m->manifest_notes) : NULL;
	return c;
}
