/* lower.c - semantic checks of a model and its lowering to the IR.
 * Steps:
 *   1. declare: evaluate constants in order, bind weights (unrolling 'for' loops and
 *      substituting {l} in tensor names), states and fns; duplicates get a note at
 *      the earlier definition;
 *   2. lower each entry: arguments become ARG ops, statements are executed at
 *      compile time (loops unrolled, fn calls inlined), calls become ops built by
 *      lower_ops.c, whose types are checked as they are built;
 *   3. check every policy of the file (policy.c) and attach the one asked for.
 * Layer regions: the outermost 'for' loop of an entry stamps its index on every op of
 * its body, so regions are contiguous and checked to be increasing. */
#include "frontend/frontend.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_UNROLL 4096   /* iterations of one loop */

/* ---- step 2: statements of fns and entries ---- */

static void lower_stmts(Lower *L, const Ast *list);

/* stmt: IDENT '=' expr ';' -- binds (or rebinds) a name of the frame */
static void
lower_assign(Lower *L, const Ast *s)
{
	ValueId v = lw_expr(L, s->a);
	LSym *ls = lw_local(L, s->name);
	if (ls && ls->is_int) {
		diag_error(L->d, s->loc, "cannot assign to '%s': it is an integer", s->name);
		return;
	}
	MSym *ms = lw_find(L, s->name);
	if (!ls && ms) {
		diag_error(L->d, s->loc, "'%s' is a %s of the model; choose another name", s->name, lw_sym_what(ms->kind));
		diag_note(L->d, ms->loc, "'%s' is defined here", s->name);
		/* bind it anyway, so later uses see the value the user meant */
	}
	if (!ls)
		ls = lw_push_local(L, s->name, s->loc);
	ls->v = v;
	if (v != IR_NO_VALUE && !L->f->vals[v].name)
		L->f->vals[v].name = arena_strdup(&L->m->arena, s->name);
}

/* stmt: 'for' IDENT 'in' expr '..' expr block -- unrolled; the outermost loop of an
 * entry is a layer loop that stamps Op.layer */
static void
lower_for(Lower *L, const Ast *s)
{
	int64_t lo, hi;
	bool oklo = lw_eval_int(L, s->a, "a loop bound", &lo);
	bool okhi = lw_eval_int(L, s->b, "a loop bound", &hi);
	if (!oklo || !okhi)
		return;
	if (hi - lo > MAX_UNROLL || lo < 0) {
		diag_error(L->d, s->loc, "loop range %lld..%lld is not in 0..%d iterations", (long long)lo,
		           (long long)hi, MAX_UNROLL);
		return;
	}
	if (lw_local(L, s->name) || lw_find(L, s->name)) {
		diag_error(L->d, s->loc, "loop variable '%s' shadows an existing name", s->name);
		return;
	}
	bool layer_loop = L->layer < 0;
	if (layer_loop && hi > lo && L->nlayers_decl >= 0 && hi > L->nlayers_decl) {
		diag_error(L->d, s->b->loc, "layer %lld is out of range: the model has %lld layers",
		           (long long)(hi - 1), (long long)L->nlayers_decl);
		return;
	}
	if (layer_loop && hi > lo && lo <= L->last_layer) {
		diag_error(L->d, s->a->loc, "layer regions must come in increasing order: layer %lld after layer %d",
		           (long long)lo, L->last_layer);
		return;
	}
	L->loop_depth++;
	for (int64_t i = lo; i < hi && lw_work(L, s->loc); i++) {
		int before = L->d->nerrors;
		uint32_t mark = L->nlocals;
		LSym *ls = lw_push_local(L, s->name, s->loc);
		ls->is_int = true;
		ls->iv = i;
		if (layer_loop) {
			L->layer = (int32_t)i;
			L->last_layer = (int32_t)i;
		}
		lower_stmts(L, s->c);
		/* values assigned in the body stay visible; only the loop variable goes */
		for (uint32_t k = mark; k + 1 < L->nlocals; k++)
			L->locals[k] = L->locals[k + 1];
		L->nlocals--;
		if (L->d->nerrors != before)
			break;
	}
	if (layer_loop)
		L->layer = -1;
	L->loop_depth--;
}

/* block: '{' stmt* '}' */
static void
lower_stmts(Lower *L, const Ast *list)
{
	for (const Ast *s = list ? list->kids : NULL; s && !L->stop; s = s->next) {
		if (diag_too_many(L->d)) {
			L->stop = true;
			return;
		}
		if (L->returned) {
			diag_error(L->d, s->loc, "statement after 'return'");
			return;
		}
		switch (s->kind) {
		case AST_ASSIGN:
			lower_assign(L, s);
			break;
		case AST_FOR:
			lower_for(L, s);
			break;
		case AST_RETURN:
			if (L->loop_depth > 0) {
				diag_error(L->d, s->loc, "'return' inside a 'for' loop");
				break;
			}
			L->ret = lw_expr(L, s->a);
			L->ret_loc = s->a->loc;
			L->returned = true;
			break;
		default:
			break;
		}
	}
}

/* Checks value v against a declared type; `what` names it in the message. */
bool
lw_check_type(Lower *L, ValueId v, Type want, Loc loc, const char *what)
{
	if (v == IR_NO_VALUE)
		return false;
	Type got = ir_vtype(L->f, v);
	if (ir_type_eq(got, want))
		return true;
	diag_error(L->d, loc, "%s has type %s, expected %s", what, lw_tstr(L, got), lw_tstr(L, want));
	return false;
}

/* The type with leading axes `lead` before the axes of `t`. */
static Type
join_wild(Type lead, Type t)
{
	Type r = t;
	r.rank = (uint8_t)(lead.rank + t.rank);
	r.dyn0 = lead.rank ? lead.dyn0 : t.dyn0;
	for (int i = 0; i < lead.rank; i++)
		r.dims[i] = lead.dims[i];
	for (int i = 0; i < t.rank; i++)
		r.dims[lead.rank + i] = t.dims[i];
	return r;
}

/* Matches value v against a fn type '[.., trailing]': the trailing axes must agree;
 * the leading ones bind '..' (the same for every argument of one call). */
static bool
match_wild(Lower *L, ValueId v, Type want, Type *lead, bool *bound, Loc loc, const char *what)
{
	Type got = ir_vtype(L->f, v);
	char ws[96];
	ir_type_str(want, ws, sizeof ws);
	char *br = strchr(ws, '[');
	char shown[112];
	if (br)
		snprintf(shown, sizeof shown, "%.*s[.., %s", (int)(br - ws), ws, br + 1);
	else
		snprintf(shown, sizeof shown, "%s[..]", ws);
	bool ok = got.dtype == want.dtype && got.rank >= want.rank && (want.rank == 0 || !want.dyn0);
	for (int i = 0; ok && i < want.rank; i++)
		ok = got.dims[got.rank - want.rank + i] == want.dims[i];
	if (!ok) {
		diag_error(L->d, loc, "%s has type %s, expected %s", what, lw_tstr(L, got), shown);
		return false;
	}
	Type l = got;
	l.rank = (uint8_t)(got.rank - want.rank);
	if (l.rank == 0)
		l.dyn0 = false;
	for (int i = l.rank; i < IR_MAX_RANK; i++)
		l.dims[i] = 0;
	if (*bound && !(l.rank == lead->rank && l.dyn0 == lead->dyn0 &&
	                memcmp(l.dims, lead->dims, sizeof l.dims) == 0)) {
		diag_error(L->d, loc, "%s has type %s, but '..' stands for other axes in this call", what,
		           lw_tstr(L, got));
		return false;
	}
	*lead = l;
	*bound = true;
	return true;
}

ValueId
lw_inline(Lower *L, const Ast *call, const MSym *fn)
{
	const Ast *def = fn->decl;
	((MSym *)fn)->used = true;
	if (!lw_work(L, call->loc))
		return IR_NO_VALUE;
	for (int i = 0; i < L->ncalls; i++)
		if (L->calls[i] == def) {
			diag_error(L->d, call->loc, "recursive call to '%s'", def->name);
			return IR_NO_VALUE;
		}
	if (L->ncalls == (int)(sizeof L->calls / sizeof L->calls[0])) {
		diag_error(L->d, call->loc, "calls nested too deeply");
		return IR_NO_VALUE;
	}
	if (call->nkids != def->nkids) {
		diag_error(L->d, call->loc, "'%s' takes %u argument%s, got %u", def->name, def->nkids,
		           def->nkids == 1 ? "" : "s", call->nkids);
		diag_note(L->d, def->loc, "'%s' is defined here", def->name);
		return IR_NO_VALUE;
	}
	/* evaluate arguments in the caller's frame */
	uint32_t n = def->nkids;
	LSym *binds = arena_alloc(&L->scratch, (n + 1) * sizeof *binds);
	bool ok = true;
	const Ast *pa = def->kids, *ca = call->kids;
	Type lead = { 0 };   /* the leading axes '..' stands for in this call */
	bool bound = false;
	for (uint32_t i = 0; i < n; i++, pa = pa->next, ca = ca->next) {
		Type t;
		bool is_int, wild;
		if (!lw_eval_type(L, pa->b, &t, &is_int, true, &wild)) {
			ok = false;
			continue;
		}
		binds[i] = (LSym){ .name = pa->name, .loc = pa->loc, .is_int = is_int, .v = IR_NO_VALUE };
		const Ast *arg = ca->kind == AST_NAMED ? ca->a : ca;
		if (ca->kind == AST_NAMED && strcmp(ca->name, pa->name) != 0) {
			diag_error(L->d, ca->loc, "argument %u of '%s' is named '%s', not '%s'", i + 1, def->name,
			           pa->name, ca->name);
			ok = false;
			continue;
		}
		if (is_int) {
			ok &= lw_eval_int(L, arg, "an 'int' argument", &binds[i].iv);
			continue;
		}
		binds[i].v = lw_expr(L, arg);
		char what[128];
		snprintf(what, sizeof what, "argument '%s' of '%s'", pa->name, def->name);
		if (wild && binds[i].v != IR_NO_VALUE)
			ok &= match_wild(L, binds[i].v, t, &lead, &bound, arg->loc, what);
		else
			ok &= lw_check_type(L, binds[i].v, t, arg->loc, what);
	}
	Type rt;
	bool rint, rwild;
	ok &= lw_eval_type(L, def->b, &rt, &rint, false, &rwild);
	if (!ok)
		return IR_NO_VALUE;
	if (rwild && !bound) {
		diag_error(L->d, def->b->loc, "the result type of '%s' has '..' but no argument binds it", def->name);
		return IR_NO_VALUE;
	}
	if (rwild)
		rt = join_wild(lead, rt);
	/* run the body in a new frame */
	uint32_t saved_frame = L->frame, saved_n = L->nlocals;
	int saved_loops = L->loop_depth;
	bool saved_ret = L->returned;
	ValueId saved_rv = L->ret;
	Loc saved_rl = L->ret_loc;
	L->frame = L->nlocals;
	for (uint32_t i = 0; i < n; i++)
		*lw_push_local(L, binds[i].name, binds[i].loc) = binds[i];
	L->calls[L->ncalls++] = def;
	L->loop_depth = 0;
	L->returned = false;
	L->ret = IR_NO_VALUE;
	int before = L->d->nerrors;
	lower_stmts(L, def->c);
	ValueId rv = L->ret;
	if (!L->returned && L->d->nerrors == before && !L->stop)
		diag_error(L->d, def->loc, "'%s' has no 'return'", def->name);
	else if (L->returned && rv != IR_NO_VALUE) {
		char what[128];
		snprintf(what, sizeof what, "the result of '%s'", def->name);
		if (!lw_check_type(L, rv, rt, L->ret_loc, what))
			rv = IR_NO_VALUE;
	}
	L->ncalls--;
	L->frame = saved_frame;
	L->nlocals = saved_n;
	L->loop_depth = saved_loops;
	L->returned = saved_ret;
	L->ret = saved_rv;
	L->ret_loc = saved_rl;
	return rv;
}

/* The kind of an entry, from its signature. */
static bool
entry_kind(Lower *L, const Ast *e, const Type *ts, FuncKind *kind)
{
	uint32_t n = e->nkids;
	bool tok0 = n >= 1 && ts[0].dtype == DT_I32 && ts[0].rank == 0;
	bool seq0 = n >= 1 && ts[0].dtype == DT_I32 && ts[0].rank == 1 && ts[0].dyn0;
	bool pos1 = n == 2 && ts[1].dtype == DT_I32 && ts[1].rank == 0;
	if (n == 2 && tok0 && pos1)
		*kind = FN_STEP;
	else if (n == 2 && seq0 && pos1)
		*kind = FN_PREFILL;
	else if (n == 1 && seq0)
		*kind = FN_FORWARD;
	else {
		diag_error(L->d, e->loc, "entry '%s' must take (token: i32, pos: i32), (tokens: i32[<=N], pos: i32) "
		           "or (tokens: i32[<=N])", e->name);
		return false;
	}
	return true;
}

/* item: 'entry' IDENT '(' params ')' '->' type block */
static void
lower_entry(Lower *L, const Ast *e)
{
	Type ts[8];
	bool ok = true;
	uint32_t i = 0;
	if (e->nkids > 8) {
		diag_error(L->d, e->loc, "entry '%s' has %u parameters, at most 2 are allowed", e->name, e->nkids);
		return;
	}
	for (const Ast *p = e->kids; p; p = p->next, i++) {
		ok &= lw_eval_type(L, p->b, &ts[i], NULL, false, NULL);
		for (const Ast *q = e->kids; q != p; q = q->next)
			if (strcmp(q->name, p->name) == 0) {
				diag_error(L->d, p->loc, "duplicate parameter '%s'", p->name);
				diag_note(L->d, q->loc, "previous definition of '%s' is here", p->name);
				ok = false;
			}
	}
	Type rt;
	ok &= lw_eval_type(L, e->b, &rt, NULL, false, NULL);
	FuncKind kind;
	if (!ok || !entry_kind(L, e, ts, &kind))
		return;
	Func *f = ir_new_func(L->m, e->name, kind, e->loc);
	L->f = f;
	i = 0;
	for (const Ast *p = e->kids; p; p = p->next, i++)
		ir_func_add_arg(L->m, f, p->name, ts[i]);
	f->rets = arena_alloc(&L->m->arena, sizeof *f->rets);
	f->rets[0] = rt;
	f->nrets = 1;
	L->frame = L->nlocals = 0;
	L->layer = -1;
	L->last_layer = -1;
	L->loop_depth = 0;
	L->returned = false;
	L->ret = IR_NO_VALUE;
	L->nops_left = 1 << 20;
	i = 0;
	for (const Ast *p = e->kids; p; p = p->next, i++) {
		int64_t ia[IR_NIA] = { i };
		ValueId v = lw_emit(L, OP_ARG, NULL, 0, ia, NULL, p->loc);
		L->f->vals[v].type = ts[i];
		L->f->vals[v].name = f->args[i].name;
		lw_push_local(L, p->name, p->loc)->v = v;
	}
	int before = L->d->nerrors;
	lower_stmts(L, e->c);
	if (!L->returned) {
		if (L->d->nerrors == before && !L->stop)
			diag_error(L->d, e->loc, "entry '%s' has no 'return'", e->name);
		return;
	}
	if (!lw_check_type(L, L->ret, rt, L->ret_loc, "the returned value"))
		return;
	ValueId r = L->ret;
	ValueId rv = ir_emit(L->m, f, OP_RET, rt, &r, 1, L->ret_loc);
	(void)rv;
}

/* Whether lowering stayed free of errors since `before`. */
static bool
d_ok(Lower *L, int before)
{
	return L->d->nerrors == before && !L->stop;
}

/* Lowers a fn on its own into a function of its own: checks a fn that no entry calls,
 * and, when the chosen policy has an exit statement (L->keep_fns), keeps the result as
 * an FN_HELPER that the early-exit pass inlines as a head; otherwise it is dropped.
 * Fns with 'int' parameters are only checked where they are called: their body
 * depends on the value. */
static void
lower_fn_alone(Lower *L, const Ast *fn)
{
	Type ts[IR_MAX_OPERANDS];
	uint32_t i = 0;
	if (fn->nkids > IR_MAX_OPERANDS)
		return;
	for (const Ast *p = fn->kids; p; p = p->next, i++) {
		bool is_int, wild;
		if (!lw_eval_type(L, p->b, &ts[i], &is_int, true, &wild) || is_int)
			return;
		/* '..' is checked with no leading axes */
	}
	Func *f = ir_new_func(L->m, fn->name, FN_FORWARD, fn->loc);
	L->f = f;
	L->frame = L->nlocals = 0;
	L->layer = L->last_layer = -1;
	L->loop_depth = 0;
	L->returned = false;
	L->ret = IR_NO_VALUE;
	L->nops_left = 1 << 20;
	i = 0;
	for (const Ast *p = fn->kids; p; p = p->next, i++) {
		ir_func_add_arg(L->m, f, p->name, ts[i]);
		int64_t ia[IR_NIA] = { i };
		LSym *ls = lw_push_local(L, p->name, p->loc);
		ls->v = lw_emit(L, OP_ARG, NULL, 0, ia, NULL, p->loc);
		for (const Ast *q = fn->kids; q != p; q = q->next)
			if (strcmp(q->name, p->name) == 0) {
				diag_error(L->d, p->loc, "duplicate parameter '%s'", p->name);
				diag_note(L->d, q->loc, "previous definition of '%s' is here", p->name);
			}
	}
	Type rt;
	int before = L->d->nerrors;
	bool rwild;
	bool okt = lw_eval_type(L, fn->b, &rt, NULL, false, &rwild);
	L->calls[L->ncalls++] = fn;
	lower_stmts(L, fn->c);
	L->ncalls--;
	if (!L->returned && L->d->nerrors == before && !L->stop)
		diag_error(L->d, fn->loc, "'%s' has no 'return'", fn->name);
	else if (L->returned && okt) {
		char what[128];
		snprintf(what, sizeof what, "the result of '%s'", fn->name);
		lw_check_type(L, L->ret, rt, L->ret_loc, what);
	}
	L->f = NULL;
	if (L->keep_fns && L->returned && d_ok(L, before) && L->ret < f->nvals) {
		f->kind = FN_HELPER;
		f->rets = arena_alloc(&L->m->arena, sizeof *f->rets);
		f->rets[0] = f->vals[L->ret].type;
		f->nrets = 1;
		ValueId r = L->ret;
		ir_emit(L->m, f, OP_RET, f->rets[0], &r, 1, L->ret_loc);
		return;
	}
	ir_remove_func(L->m, f);
}

/* ---- the module ---- */

static int64_t
count_regions(const Module *m)
{
	int64_t n = 0;
	for (uint32_t i = 0; i < m->nfuncs; i++)
		for (uint32_t k = 0; k < m->funcs[i]->nops; k++)
			if (m->funcs[i]->ops[k].layer + 1 > n)
				n = m->funcs[i]->ops[k].layer + 1;
	for (uint32_t i = 0; i < m->nparams; i++)
		if (m->params[i].layer + 1 > n)
			n = m->params[i].layer + 1;
	return n;
}

static Module *
lower_model(const Ast *model, bool keep_fns, Diag *d)
{
	Lower L = { .d = d, .model = model, .nlayers_decl = -1, .layer = -1, .work_left = 1 << 20,
	            .keep_fns = keep_fns };
	L.m = ir_new_module(model->name);
	/* 1. declarations */
	lw_declare(&L, model);
	/* 2. entries */
	int nentries = 0;
	/* an entry that stopped at a limit (L.stop) ends lowering: the next entry would
	 * be lowered against a half-built state */
	for (const Ast *it = model->kids; it && !diag_too_many(d) && !L.stop; it = it->next)
		if (it->kind == AST_ENTRY) {
			MSym *s = lw_find(&L, it->name);
			if (s && s->decl == it) {
				lower_entry(&L, it);
				nentries++;
			}
		}
	if (nentries == 0 && d->nerrors == 0)
		diag_error(d, model->loc, "model '%s' has no entry", model->name);
	for (uint32_t i = 0; i < L.nsyms && !diag_too_many(d) && !L.stop; i++)
		if (L.syms[i].kind == SYM_FN && (!L.syms[i].used || keep_fns))
			lower_fn_alone(&L, L.syms[i].decl);
	L.m->nlayers = (int32_t)(L.nlayers_decl >= 0 ? L.nlayers_decl : count_regions(L.m));
	for (uint32_t i = 0; i < L.nsyms; i++)
		free(L.syms[i].slots);
	free(L.syms);
	strmap_free(&L.symidx);
	free(L.locals);
	arena_free(&L.scratch);
	return L.m;
}

/* Whether policy `name` of the file has an 'exit' statement (its heads are kept). */
static bool
policy_has_exit(const Ast *file, const char *name)
{
	for (const Ast *it = file->kids; name && it; it = it->next)
		if (it->kind == AST_POLICY && strcmp(it->name, name) == 0)
			for (const Ast *st = it->kids; st; st = st->next)
				if (st->kind == AST_PSTMT && st->name && strcmp(st->name, "exit") == 0)
					return true;
	return false;
}

/* Keeps the helpers that the attached policy's exit statements name as heads. */
static void
drop_unused_helpers(Module *m)
{
	for (uint32_t i = m->nfuncs; i-- > 0;) {
		Func *f = m->funcs[i];
		if (f->kind != FN_HELPER || fe_policy_names_head(m->policy, f->name))
			continue;
		ir_remove_func(m, f);
	}
}

Module *
fe_lower(const Ast *file, const char *policy, Diag *d)
{
	int before = d->nerrors;
	const Ast *model = NULL;
	for (const Ast *it = file->kids; it; it = it->next)
		if (it->kind == AST_MODEL) {
			if (model) {
				diag_error(d, it->loc, "a file holds one model; '%s' is a second one", it->name);
				diag_note(d, model->loc, "the first model, '%s', is here", model->name);
				continue;
			}
			model = it;
		}
	if (!model) {
		if (d->nerrors == before)
			diag_error(d, file->loc, "no model in the file");
		return NULL;
	}
	Module *m = lower_model(model, policy_has_exit(file, policy), d);
	/* 3. policies: all are checked, the one asked for is attached */
	FeModelInfo mi = { .name = model->name, .nlayers = m->nlayers, .model = model };
	const Ast *chosen = NULL;
	for (const Ast *it = file->kids; it && !diag_too_many(d); it = it->next) {
		if (it->kind != AST_POLICY)
			continue;
		const Ast *dup = NULL;
		for (const Ast *q = file->kids; q != it; q = q->next)
			if (q->kind == AST_POLICY && strcmp(q->name, it->name) == 0)
				dup = q;
		if (dup) {
			diag_error(d, it->loc, "duplicate policy '%s'", it->name);
			diag_note(d, dup->loc, "previous definition of '%s' is here", it->name);
			continue;
		}
		if (strcmp(it->name, "dense") == 0) {
			diag_error(d, it->loc, "'dense' is the name of the empty policy; choose another name");
			continue;
		}
		if (strcmp(it->a->name, model->name) != 0) {
			diag_error(d, it->a->loc, "unknown model '%s' in policy '%s'", it->a->name, it->name);
			continue;
		}
		Policy *p = fe_policy_build(&m->arena, it, &mi, d);
		if (p && policy && strcmp(policy, it->name) == 0) {
			m->policy = p;
			chosen = it;
		}
	}
	if (policy && strcmp(policy, "dense") != 0 && !chosen && d->nerrors == before) {
		char names[512] = "";
		size_t n = 0;
		for (const Ast *it = file->kids; it && n + 80 < sizeof names; it = it->next)
			if (it->kind == AST_POLICY)
				n += (size_t)snprintf(names + n, sizeof names - n, ", '%.60s'", it->name);
		diag_error(d, (Loc){ 0 }, "unknown policy '%s' (the file has 'dense'%s)", policy, names);
	}
	if (d->nerrors != before) {
		ir_free_module(m);
		return NULL;
	}
	drop_unused_helpers(m);
	return m;
}

/* Sources handed to a Diag must outlive it; they are kept here for the life of the
 * process (reachable, so leak checkers stay quiet). */
static SourceFile **kept_sources;
static size_t nkept, capkept;

Module *
fe_load_text(const char *path, const char *text, size_t len, const char *policy, Diag *d)
{
	SourceFile *src = xcalloc(1, sizeof *src);
	VEC_PUSH(kept_sources, nkept, capkept);
	kept_sources[nkept++] = src;
	char *copy = xmalloc(len + 1);
	memcpy(copy, text, len);
	copy[len] = '\0';
	*src = (SourceFile){ .path = xstrdup(path), .text = copy, .len = len };
	diag_add_source(d, src);
	Arena ar = { 0 };
	int before = d->nerrors;
	Ast *file = ast_parse(&ar, src, d);
	Module *m = d->nerrors == before ? fe_lower(file, policy, d) : NULL;
	arena_free(&ar);
	return m;
}

Module *
fe_load(const char *path, const char *policy, Diag *d)
{
	SourceFile *src = diag_read_file(path);
	if (!src) {
		diag_error(d, (Loc){ 0 }, "cannot read '%s': %s", path,
		           errno == EFBIG ? "larger than the 64 MiB limit of a source file" : strerror(errno));
		return NULL;
	}
	return fe_load_text(path, src->text, src->len, policy, d);
}
