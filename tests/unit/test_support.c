/* test_support.c - arena, types, op table and diagnostics basics. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "ir/ir.h"

Test(types, str_and_numel)
{
	char buf[64];
	Type t = ir_type_mat(DT_F32, 256, 288);
	t.dyn0 = true;
	cr_assert_str_eq(ir_type_str(t, buf, sizeof buf), "f32[<=256, 288]");
	cr_assert_eq(ir_type_numel(t), 256 * 288);
	cr_assert_str_eq(ir_type_str(ir_type_scalar(DT_I32), buf, sizeof buf), "i32");
	cr_assert(!ir_type_eq(t, ir_type_mat(DT_F32, 256, 288)));
}

Test(ops, table_round_trip)
{
	for (int i = 0; i < OP_COUNT; i++)
		cr_assert_eq(ir_op_from_name(ir_op_names[i]), i, "op %s", ir_op_names[i]);
	cr_assert_eq(ir_op_from_name("no_such_op"), -1);
	cr_assert_eq(ir_op_arity[OP_LINEAR], 2);
}

Test(arena, alignment_and_zeroing)
{
	Arena a = { 0 };
	for (int i = 1; i < 1000; i++) {
		unsigned char *p = arena_alloc(&a, (size_t)i * 7);
		cr_assert_eq((uintptr_t)p % 16, 0);
		cr_assert_eq(p[0], 0);
		p[0] = 1;
	}
	cr_assert_str_eq(arena_printf(&a, "%s.%d", "wq", 3), "wq.3");
	arena_free(&a);
}

Test(diag, caret_and_range)
{
	SourceFile src = { .path = "m.elide", .text = "model m {\n  const x = y;\n}\n" };
	src.len = strlen(src.text);
	char *buf = NULL;
	size_t n = 0;
	FILE *out = open_memstream(&buf, &n);
	Diag d;
	diag_init(&d, out);
	diag_add_source(&d, &src);
	diag_error(&d, (Loc){ "m.elide", 2, 13, 14 }, "unknown name '%s'", "y");
	fclose(out);
	cr_assert_str_eq(buf, "m.elide:2:13: error: unknown name 'y'\n  const x = y;\n            ^\n");
	cr_assert_eq(d.nerrors, 1);
	free(buf);
}

Test(diag, stops_after_limit)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *out = open_memstream(&buf, &n);
	Diag d;
	diag_init(&d, out);
	for (int i = 0; i < 30; i++)
		diag_error(&d, (Loc){ "f", 1, 1, 0 }, "e%d", i);
	fclose(out);
	cr_assert(diag_too_many(&d));
	cr_assert_not_null(strstr(buf, "too many errors"));
	cr_assert_null(strstr(buf, "e20"));
	free(buf);
}
