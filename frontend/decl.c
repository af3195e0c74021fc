/* decl.c - step 1 of lowering: model-level names and declarations.
 * Symbols (constants, weights, state, fns, entries) with duplicate checks and a
 * note at the earlier definition; constant expressions with exact integer
 * arithmetic; written types; weights and state declared in unrolled 'for' loops
 * with {name} substitution in tensor names.  Also the frame of local names used
 * by both steps, and the unrolling budget.  lower.c does step 2. */
#include "frontend/frontend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_UNROLL 4096   /* iterations of one loop */
#define MAX_INDEX 65536   /* index of an indexed weight or state */

/* ---- symbols ---- */

MSym *
lw_find(Lower *L, const char *name)
{
	int64_t i = strmap_get(&L->symidx, name);
	return i < 0 ? NULL : &L->syms[i];
}

const char *
lw_sym_what(SymKind k)
{
	switch (k) {
	case SYM_CONST: return "constant";
	case SYM_WEIGHT: return "weight";
	case SYM_STATE: return "state";
	case SYM_FN: return "fn";
	case SYM_ENTRY: return "entry";
	}
	return "name";
}

/* Declares a model-level name; reports a duplicate (with a note) and returns NULL. */
static MSym *
declare(Lower *L, const char *name, SymKind kind, Loc loc, const Ast *decl)
{
	MSym *old = lw_find(L, name);
	if (old) {
		diag_error(L->d, loc, "duplicate definition of '%s'", name);
		diag_note(L->d, old->loc, "previous definition of '%s' (a %s) is here", name, lw_sym_what(old->kind));
		return NULL;
	}
	VEC_PUSH(L->syms, L->nsyms, L->capsyms);
	strmap_add(&L->symidx, name, L->nsyms);
	MSym *s = &L->syms[L->nsyms++];
	*s = (MSym){ .name = name, .kind = kind, .loc = loc, .decl = decl, .param = -1 };
	return s;
}

/* Sets slot idx of an indexed weight or state; false if it was set already. */
static bool
set_slot(MSym *s, int64_t idx, int32_t v)
{
	if (idx >= s->nslots) {
		int64_t n = s->nslots ? s->nslots : 8;
		while (n <= idx)
			n *= 2;
		s->slots = xrealloc(s->slots, (size_t)n * sizeof *s->slots);
		for (int64_t i = s->nslots; i < n; i++)
			s->slots[i] = -1;
		s->nslots = n;
	}
	if (s->slots[idx] >= 0)
		return false;
	s->slots[idx] = v;
	return true;
}

bool
lw_work(Lower *L, Loc loc)
{
	if (L->stop)
		return false;
	if (--L->work_left >= 0)
		return true;
	diag_error(L->d, loc, "too much unrolling: more than %d loop iterations and inlined calls", 1 << 20);
	L->stop = true;
	return false;
}

/* ---- locals: values, loop variables and int parameters of the current frame ---- */

LSym *
lw_local(Lower *L, const char *name)
{
	for (uint32_t i = L->nlocals; i-- > L->frame;)
		if (strcmp(L->locals[i].name, name) == 0)
			return &L->locals[i];
	return NULL;
}

LSym *
lw_push_local(Lower *L, const char *name, Loc loc)
{
	VEC_PUSH(L->locals, L->nlocals, L->caplocals);
	LSym *s = &L->locals[L->nlocals++];
	*s = (LSym){ .name = name, .loc = loc, .v = IR_NO_VALUE };
	return s;
}

/* ---- constant expressions ---- */

bool
lw_eval_num(Lower *L, const Ast *e, Num *out)
{
	if (!e)
		return false;
	if (++L->depth > 400) {
		L->depth--;
		diag_error(L->d, e->loc, "expression nested too deeply");
		return false;
	}
	bool ok = false;
	Num a, b;
	switch (e->kind) {
	case AST_NUM:
		*out = (Num){ e->num, e->is_int };
		ok = true;
		break;
	case AST_IDENT: {
		LSym *ls = lw_local(L, e->name);
		if (ls && ls->is_int) {
			*out = (Num){ (double)ls->iv, true };
			ok = true;
		} else if (ls) {
			diag_error(L->d, e->loc, "'%s' is a tensor, expected a constant", e->name);
		} else {
			MSym *s = lw_find(L, e->name);
			if (s && s->kind == SYM_CONST && s->valid) {
				*out = s->val;
				ok = true;
			} else if (s && s->kind == SYM_CONST) {
				ok = false; /* its definition was reported already */
			} else if (s) {
				diag_error(L->d, e->loc, "'%s' is a %s, expected a constant", e->name, lw_sym_what(s->kind));
			} else {
				diag_error(L->d, e->loc, "unknown name '%s'", e->name);
			}
		}
		break;
	}
	case AST_NEG:
		if ((ok = lw_eval_num(L, e->a, &a))) {
			if (a.is_int && a.v == -9007199254740992.0)
				a.v = -a.v;
			*out = (Num){ -a.v, a.is_int };
		}
		break;
	case AST_BINARY: {
		bool oka = lw_eval_num(L, e->a, &a);
		bool okb = lw_eval_num(L, e->b, &b);
		if (!oka || !okb)
			break;
		char op = e->name[0];
		if (a.is_int && b.is_int) {
			int64_t x = (int64_t)a.v, y = (int64_t)b.v, r = 0;
			bool ovf = false;
			switch (op) {
			case '+': ovf = __builtin_add_overflow(x, y, &r); break;
			case '-': ovf = __builtin_sub_overflow(x, y, &r); break;
			case '*': ovf = __builtin_mul_overflow(x, y, &r); break;
			case '/':
				if (y == 0) {
					diag_error(L->d, e->loc, "division by zero in a constant expression");
					goto done;
				}
				if (x == INT64_MIN && y == -1)
					ovf = true;
				else
					r = x / y;
				break;
			}
			if (ovf || r > (INT64_C(1) << 53) || r < -(INT64_C(1) << 53)) {
				diag_error(L->d, e->loc, "integer overflow in a constant expression");
				break;
			}
			*out = (Num){ (double)r, true };
			ok = true;
		} else {
			double r = 0;
			switch (op) {
			case '+': r = a.v + b.v; break;
			case '-': r = a.v - b.v; break;
			case '*': r = a.v * b.v; break;
			case '/':
				if (b.v == 0) {
					diag_error(L->d, e->loc, "division by zero in a constant expression");
					goto done;
				}
				r = a.v / b.v;
				break;
			}
			if (!isfinite(r)) {
				diag_error(L->d, e->loc, "constant expression overflows");
				break;
			}
			*out = (Num){ r, false };
			ok = true;
		}
		break;
	}
	case AST_CALL:
		diag_error(L->d, e->loc, "call to '%s' in a constant expression", e->name);
		break;
	case AST_INDEX:
		diag_error(L->d, e->loc, "'%s[...]' in a constant expression", e->name);
		break;
	default:
		diag_error(L->d, e->loc, "expected a constant expression");
		break;
	}
done:
	L->depth--;
	return ok;
}

bool
lw_eval_int(Lower *L, const Ast *e, const char *what, int64_t *out)
{
	Num n;
	if (!lw_eval_num(L, e, &n))
		return false;
	if (!n.is_int) {
		diag_error(L->d, e->loc, "%s must be an integer, saw %g", what, n.v);
		return false;
	}
	*out = (int64_t)n.v;
	return true;
}

/* True when e mentions no tensor: it can be evaluated as a constant. */
bool
lw_is_const(Lower *L, const Ast *e)
{
	if (!e)
		return true;
	switch (e->kind) {
	case AST_NUM:
		return true;
	case AST_IDENT: {
		LSym *ls = lw_local(L, e->name);
		if (ls)
			return ls->is_int;
		MSym *s = lw_find(L, e->name);
		return s && s->kind == SYM_CONST;
	}
	case AST_NEG:
		return lw_is_const(L, e->a);
	case AST_BINARY:
		return lw_is_const(L, e->a) && lw_is_const(L, e->b);
	default:
		return false;
	}
}

/* ---- types ---- */

/* Evaluates a written type.  allow_int: the type may be 'int' (fn parameters). */
bool
lw_eval_type(Lower *L, const Ast *t, Type *out, bool *is_int, bool allow_int, bool *wild)
{
	*out = (Type){ 0 };
	if (is_int)
		*is_int = false;
	if (wild)
		*wild = false;
	if (allow_int && strcmp(t->name, "int") == 0 && !t->kids) {
		*is_int = true;
		return true;
	}
	int dt = ir_dtype_from_name(t->name);
	if (dt < 0) {
		diag_error(L->d, t->loc, "unknown type '%s'", t->name);
		return false;
	}
	out->dtype = (DType)dt;
	if (t->nkids > IR_MAX_RANK + 1) {
		diag_error(L->d, t->loc, "type has %u dimensions, at most %d are supported", t->nkids, IR_MAX_RANK);
		return false;
	}
	bool ok = true;
	int i = 0;
	for (const Ast *d = t->kids; d; d = d->next) {
		int64_t v;
		if (d->name && strcmp(d->name, "..") == 0) {
			if (!wild) {
				diag_error(L->d, d->loc, "'..' (any leading axes) is only allowed in the types of a fn");
				ok = false;
			} else if (d != t->kids) {
				diag_error(L->d, d->loc, "'..' must be the first dimension");
				ok = false;
			} else {
				*wild = true;
			}
			continue;
		}
		if (i == IR_MAX_RANK) {
			diag_error(L->d, t->loc, "type has %u dimensions, at most %d are supported", t->nkids, IR_MAX_RANK);
			return false;
		}
		if (!lw_eval_int(L, d->a, "a dimension", &v)) {
			ok = false;
			i++;
			continue;
		}
		if (v <= 0 || v > (INT64_C(1) << 31)) {
			diag_error(L->d, d->a->loc, "dimension must be in 1..2^31, saw %lld", (long long)v);
			ok = false;
		}
		if (d->name) {
			if (d != t->kids) {
				diag_error(L->d, d->loc, "only the first dimension may be a bound '<=N'");
				ok = false;
			}
			out->dyn0 = true;
		}
		out->dims[i++] = v;
	}
	out->rank = (uint8_t)i;
	return ok;
}

const char *
lw_tstr(Lower *L, Type t)
{
	char buf[96];
	return arena_strdup(&L->scratch, ir_type_str(t, buf, sizeof buf));
}

/* ---- step 1: declarations ---- */

static void decl_weights(Lower *L, const Ast *list, const char *loopvar);

/* Expands {name} in a tensor name with loop variables and integer constants. */
static const char *
expand_name(Lower *L, const Ast *str)
{
	const char *s = str->name;
	size_t n = strlen(s);
	char *out = arena_alloc(&L->m->arena, n * 4 + 64), *o = out;
	size_t cap = n * 4 + 63;
	bool ok = true;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '{') {
			if (s[i] == '}') {
				Loc loc = str->loc;
				loc.col += (int)i + 1;
				loc.end_col = loc.col + 1;
				diag_error(L->d, loc, "unmatched '}' in a weight name");
				ok = false;
			}
			if ((size_t)(o - out) < cap)
				*o++ = s[i];
			continue;
		}
		const char *close = strchr(s + i, '}');
		Loc loc = str->loc;
		loc.col += (int)i + 1;
		loc.end_col = close ? loc.col + (int)(close - (s + i)) + 1 : 0;
		if (!close) {
			diag_error(L->d, loc, "unterminated '{' in a weight name");
			return NULL;
		}
		char name[64];
		size_t len = (size_t)(close - (s + i + 1));
		snprintf(name, sizeof name, "%.*s", (int)(len < 63 ? len : 63), s + i + 1);
		LSym *ls = lw_local(L, name);
		MSym *ms = lw_find(L, name);
		long long v = 0;
		if (ls && ls->is_int) {
			v = (long long)ls->iv;
		} else if (ms && ms->kind == SYM_CONST && ms->valid && ms->val.is_int) {
			v = (long long)ms->val.v;
		} else {
			if (len == 0)
				diag_error(L->d, loc, "empty '{}' in weight name '%s'", s);
			else if (!L->in_loop)
				diag_error(L->d, loc, "weight name pattern '{%s}' does not resolve: not inside a 'for' loop", name);
			else
				diag_error(L->d, loc, "weight name pattern '{%s}' does not resolve: '%s' is not a loop variable or integer constant", name, name);
			ok = false;
		}
		char num[32];
		int k = snprintf(num, sizeof num, "%lld", v);
		for (int j = 0; j < k && (size_t)(o - out) < cap; j++)
			*o++ = num[j];
		i += len + 1;
	}
	*o = '\0';
	if (n == 0) {
		diag_error(L->d, str->loc, "empty weight name");
		ok = false;
	}
	return ok ? out : NULL;
}

/* Runs `body` for each value of a 'for' loop in a declaration block. */
static void
decl_for(Lower *L, const Ast *f, void (*body)(Lower *, const Ast *, const char *))
{
	int64_t lo, hi;
	bool oklo = lw_eval_int(L, f->a, "a loop bound", &lo);
	bool okhi = lw_eval_int(L, f->b, "a loop bound", &hi);
	if (!oklo || !okhi)
		return;
	if (hi - lo > MAX_UNROLL || lo < 0) {
		diag_error(L->d, f->loc, "loop range %lld..%lld is not in 0..%d iterations", (long long)lo,
		           (long long)hi, MAX_UNROLL);
		return;
	}
	if (lw_local(L, f->name) || lw_find(L, f->name)) {
		diag_error(L->d, f->loc, "loop variable '%s' shadows an existing name", f->name);
		return;
	}
	bool was = L->in_loop;
	L->in_loop = true;
	for (int64_t i = lo; i < hi && !diag_too_many(L->d) && lw_work(L, f->loc); i++) {
		int before = L->d->nerrors;
		LSym *ls = lw_push_local(L, f->name, f->loc);
		ls->is_int = true;
		ls->iv = i;
		body(L, f, f->name);
		L->nlocals--;
		if (L->d->nerrors != before)
			break; /* the same mistake in every iteration: say it once */
	}
	L->in_loop = was;
}

static void
decl_weights_for(Lower *L, const Ast *f, const char *var)
{
	decl_weights(L, f, var);
}

/* Evaluates the index of `name[idx]` in a declaration. */
static bool
decl_index(Lower *L, const Ast *idx, int64_t *out)
{
	if (!lw_eval_int(L, idx, "an index", out))
		return false;
	if (*out < 0 || *out >= MAX_INDEX) {
		diag_error(L->d, idx->loc, "index %lld is out of range 0..%d", (long long)*out, MAX_INDEX - 1);
		return false;
	}
	if (L->nlayers_decl >= 0 && *out >= L->nlayers_decl) { /* an index names a layer */
		diag_error(L->d, idx->loc, "layer %lld is out of range: the model has %lld layers", (long long)*out,
		           (long long)L->nlayers_decl);
		return false;
	}
	return true;
}

/* Finds or declares the model symbol of an indexed or plain declaration, checking
 * that every declaration of one name agrees on being indexed. */
static MSym *
decl_sym(Lower *L, const Ast *w, SymKind kind)
{
	MSym *s = lw_find(L, w->name);
	if (s && s->kind == kind && s->indexed && w->a)
		return s;
	if (s) {
		diag_error(L->d, w->loc, "duplicate definition of '%s'", w->name);
		diag_note(L->d, s->loc, "previous definition of '%s' (a %s) is here", w->name, lw_sym_what(s->kind));
		return NULL;
	}
	s = declare(L, w->name, kind, w->loc, w);
	if (s)
		s->indexed = w->a != NULL;
	return s;
}

/* witem: IDENT ['[' expr ']'] ':' type '=' STRING ';' */
static void
decl_weight(Lower *L, const Ast *w)
{
	Type t;
	bool ok = lw_eval_type(L, w->b, &t, NULL, false, NULL);
	if (ok && (t.dtype == DT_I32 || t.dtype == DT_I8)) {
		diag_error(L->d, w->b->loc, "weights must be f32, bf16 or f16, saw '%s'", ir_dtype_name(t.dtype));
		ok = false;
	}
	if (ok && t.dyn0) {
		diag_error(L->d, w->b->loc, "a weight cannot have a bounded dimension");
		ok = false;
	}
	DType file_dtype = t.dtype; /* the file's tensor must have it (bf16, f16) */
	t.dtype = DT_F32;           /* the loader converts bf16 and f16 to f32 */
	int64_t idx = -1;
	if (w->a && !decl_index(L, w->a, &idx))
		return;
	const char *src = expand_name(L, w->c);
	MSym *s = decl_sym(L, w, SYM_WEIGHT);
	if (!s)
		return;
	if (!ok || !src) {
		s->bad = true; /* reported: uses of it stay quiet */
		return;
	}
	if (!w->a) {
		s->param = (int32_t)ir_add_param(L->m, w->name, src, t, -1, w->loc);
		L->m->params[s->param].file_dtype = file_dtype;
		return;
	}
	char pname[160];
	snprintf(pname, sizeof pname, "%s.%lld", w->name, (long long)idx);
	if (s->nslots > idx && s->slots[idx] >= 0) {
		diag_error(L->d, w->loc, "duplicate definition of '%s[%lld]'", w->name, (long long)idx);
		diag_note(L->d, L->m->params[s->slots[idx]].loc, "previous definition is here");
		return;
	}
	int32_t pi = (int32_t)ir_add_param(L->m, pname, src, t, (int32_t)idx, w->loc);
	L->m->params[pi].file_dtype = file_dtype;
	set_slot(s, idx, pi);
}

static void
decl_weights(Lower *L, const Ast *list, const char *loopvar)
{
	for (const Ast *w = list->kids; w && !diag_too_many(L->d) && !L->stop; w = w->next) {
		if (w->kind == AST_FOR)
			decl_for(L, w, decl_weights_for);
		else if (w->kind == AST_WEIGHT)
			decl_weight(L, w);
	}
}

static void decl_states(Lower *L, const Ast *list, const char *loopvar);

/* sitem: IDENT ['[' expr ']'] ':' 'kvcache' '(' ctx ',' kv_heads ',' head_dim ')' ';' */
static void
decl_state(Lower *L, const Ast *st)
{
	const Ast *call = st->c;
	static const char *const what[3] = { "ctx", "kv_heads", "head_dim" };
	int64_t v[3] = { 0 };
	bool ok = true;
	if (strcmp(call->name, "kvcache") != 0) {
		diag_error(L->d, call->loc, "unknown state kind '%s', expected 'kvcache'", call->name);
		ok = false;
	} else if (call->nkids != 3) {
		diag_error(L->d, call->loc, "'kvcache' takes 3 arguments (ctx, kv_heads, head_dim), got %u", call->nkids);
		ok = false;
	}
	int i = 0;
	for (const Ast *a = call->kids; ok && a; a = a->next, i++) {
		if (a->kind == AST_NAMED) {
			diag_error(L->d, a->loc, "'kvcache' takes positional arguments only");
			ok = false;
		} else if (!lw_eval_int(L, a, what[i], &v[i])) {
			ok = false;
		} else if (v[i] <= 0 || v[i] > (INT64_C(1) << 24)) {
			diag_error(L->d, a->loc, "kvcache %s must be in 1..2^24, saw %lld", what[i], (long long)v[i]);
			ok = false;
		}
	}
	int64_t idx = -1;
	if (st->a && !decl_index(L, st->a, &idx))
		return;
	MSym *s = decl_sym(L, st, SYM_STATE);
	if (!s)
		return;
	if (!ok) {
		s->bad = true;
		return;
	}
	char name[160];
	if (idx >= 0)
		snprintf(name, sizeof name, "%s.%lld", st->name, (long long)idx);
	else
		snprintf(name, sizeof name, "%s", st->name);
	State state = { .name = name, .kind = ST_KVCACHE, .layer = (int32_t)idx, .ctx = v[0],
	                .kv_heads = v[1], .head_dim = v[2], .loc = st->loc };
	if (idx < 0) {
		s->param = (int32_t)ir_add_state(L->m, state);
		return;
	}
	if (s->nslots > idx && s->slots[idx] >= 0) {
		diag_error(L->d, st->loc, "duplicate definition of '%s[%lld]'", st->name, (long long)idx);
		diag_note(L->d, L->m->states[s->slots[idx]].loc, "previous definition is here");
		return;
	}
	set_slot(s, idx, (int32_t)ir_add_state(L->m, state));
}

static void
decl_states_for(Lower *L, const Ast *f, const char *var)
{
	decl_states(L, f, var);
}

static void
decl_states(Lower *L, const Ast *list, const char *loopvar)
{
	for (const Ast *s = list->kids; s && !diag_too_many(L->d) && !L->stop; s = s->next) {
		if (s->kind == AST_FOR)
			decl_for(L, s, decl_states_for);
		else if (s->kind == AST_STATE)
			decl_state(L, s);
	}
}

/* item: 'const' IDENT '=' expr (',' IDENT '=' expr)* ';' (one name) */
static void
decl_const(Lower *L, const Ast *c)
{
	Num v = { 0 };
	bool ok = lw_eval_num(L, c->a, &v);
	MSym *s = declare(L, c->name, SYM_CONST, c->loc, c);
	if (!s)
		return;
	s->valid = ok;
	s->val = v;
	if (ok && v.is_int) {
		if (L->m->config.n >= sizeof L->m->config.values / sizeof L->m->config.values[0])
			diag_error(L->d, c->loc, "too many integer constants (at most 64)");
		else
			ir_config_set(L->m, c->name, (int64_t)v.v);
	}
}

/* Step 1: constants first (in order), then weights, state, fns and entries. */
void
lw_declare(Lower *L, const Ast *model)
{
	for (const Ast *it = model->kids; it && !diag_too_many(L->d); it = it->next)
		if (it->kind == AST_LIST)
			for (const Ast *c = it->kids; c; c = c->next)
				decl_const(L, c);
	MSym *layers = lw_find(L, "layers");
	if (layers && layers->kind == SYM_CONST && layers->valid && layers->val.is_int) {
		L->nlayers_decl = (int64_t)layers->val.v;
		if (L->nlayers_decl < 0 || L->nlayers_decl > MAX_UNROLL) {
			diag_error(L->d, layers->loc, "'layers' must be in 0..%d, saw %lld", MAX_UNROLL, (long long)L->nlayers_decl);
			L->nlayers_decl = -1;
		}
	}
	for (const Ast *it = model->kids; it && !diag_too_many(L->d); it = it->next) {
		switch (it->kind) {
		case AST_WEIGHTS:
			if (strcmp(it->name, "safetensors") != 0 && strcmp(it->name, "gguf") != 0)
				diag_error(L->d, it->loc, "unknown weights format '%s', expected 'safetensors' or 'gguf'", it->name);
			decl_weights(L, it, NULL);
			break;
		case AST_STATES:
			decl_states(L, it, NULL);
			break;
		case AST_FN:
		case AST_ENTRY:
			declare(L, it->name, it->kind == AST_FN ? SYM_FN : SYM_ENTRY, it->loc, it);
			break;
		default:
			break;
		}
	}
}
