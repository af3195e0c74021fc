/* ast.c - syntax tree constructors (one call per bison action) and the dump printed
 * by `elide check --dump-ast`.  Nodes live in the parser's arena and are never freed
 * one by one.  Lists are AST_LIST nodes whose children are linked through `next`,
 * with a tail pointer so appending is O(1). */
#include "frontend/frontend.h"

#include <string.h>

static const char *const kind_names[] = { /* ORDER: AstKind */
	"num", "ident", "index", "call", "named", "binary", "neg", "type", "dim",
	"assign", "for", "return", "const", "weights", "weight", "states", "state",
	"param", "fn", "entry", "model", "policy", "pstmt", "pword", "list", "file",
};
_Static_assert(sizeof kind_names / sizeof kind_names[0] == AST_FILE + 1, "kind_names");

const char *
ast_kind_name(AstKind k)
{
	return (unsigned)k <= AST_FILE ? kind_names[k] : "?";
}

Ast *
ast_new(Arena *ar, AstKind kind, Loc loc)
{
	Ast *n = arena_alloc(ar, sizeof *n);
	n->kind = kind;
	n->loc = loc;
	return n;
}

Ast *
ast_mk(Arena *ar, AstKind kind, Loc loc, const char *name, Ast *a, Ast *b, Ast *c)
{
	Ast *n = ast_new(ar, kind, loc);
	n->name = name;
	n->a = a;
	n->b = b;
	n->c = c;
	return n;
}

Ast *
ast_mknum(Arena *ar, Loc loc, double v, bool is_int)
{
	Ast *n = ast_new(ar, AST_NUM, loc);
	n->num = v;
	n->is_int = is_int;
	return n;
}

Ast *
ast_word(Arena *ar, Loc loc, int op, const char *text, double num, bool is_int)
{
	Ast *n = ast_new(ar, AST_PWORD, loc);
	n->op = op;
	if (op == 's')
		n->str = text;
	else
		n->name = text;
	n->num = num;
	n->is_int = is_int;
	return n;
}

Ast *
ast_list(Arena *ar, Loc loc)
{
	return ast_new(ar, AST_LIST, loc);
}

Ast *
ast_append(Ast *list, Ast *item)
{
	if (!list || !item)
		return list;
	item->next = NULL;
	if (list->last)
		list->last->next = item;
	else
		list->kids = item;
	list->last = item;
	list->nkids++;
	return list;
}

Ast *
ast_with_kids(Ast *node, Ast *list)
{
	if (node && list) {
		node->kids = list->kids;
		node->last = list->last;
		node->nkids = list->nkids;
	}
	return node;
}

static void
dump(FILE *out, const Ast *n, int depth, const char *role)
{
	if (!n)
		return;
	if (depth > 200) {
		fprintf(out, "%*s...\n", 2 * depth, "");
		return;
	}
	fprintf(out, "%*s%s%s%s <%d:%d>", 2 * depth, "", role, role[0] ? ": " : "",
	        ast_kind_name(n->kind), n->loc.line, n->loc.col);
	if (n->name && n->kind != AST_DIM)
		fprintf(out, " '%s'", n->name);
	if (n->kind == AST_DIM && n->name)
		fprintf(out, n->name[0] == '<' ? " bound" : " any");
	if (n->str)
		fprintf(out, " \"%s\"", n->str);
	if (n->kind == AST_NUM || (n->kind == AST_PWORD && n->op == 'n'))
		fprintf(out, n->is_int ? " %.0f" : " %g", n->num);
	fputc('\n', out);
	dump(out, n->a, depth + 1, "a");
	dump(out, n->b, depth + 1, "b");
	dump(out, n->c, depth + 1, "c");
	for (const Ast *k = n->kids; k; k = k->next)
		dump(out, k, depth + 1, "");
}

void
ast_dump(FILE *out, const Ast *n)
{
	dump(out, n, 0, "");
}
