/* types.c - dtypes and static tensor types.
 * A Type is a dtype, a rank up to IR_MAX_RANK and extents; dims[0] may be a bound
 * (dyn0) for the one bounded dynamic sequence dimension the IR allows. */
#include "ir/ir.h"

#include <stdio.h>
#include <string.h>

static const char *const dtype_names[DT_COUNT] = { /* ORDER: DType */
	"f32", "i32", "bf16", "f16", "i8", "bool",
};
static const size_t dtype_sizes[DT_COUNT] = { 4, 4, 2, 2, 1, 4 }; /* bool: stored as i32 0 or 1 */ /* ORDER: DType */

const char *
ir_dtype_name(DType t)
{
	return (unsigned)t < DT_COUNT ? dtype_names[t] : "?";
}

int
ir_dtype_from_name(const char *s)
{
	for (int i = 0; i < DT_COUNT; i++)
		if (strcmp(s, dtype_names[i]) == 0)
			return i;
	return -1;
}

size_t
ir_dtype_size(DType t)
{
	return (unsigned)t < DT_COUNT ? dtype_sizes[t] : 0;
}

Type
ir_type_scalar(DType t)
{
	return (Type){ .dtype = t };
}

Type
ir_type_vec(DType t, int64_t n)
{
	return (Type){ .dtype = t, .rank = 1, .dims = { n } };
}

Type
ir_type_mat(DType t, int64_t rows, int64_t cols)
{
	return (Type){ .dtype = t, .rank = 2, .dims = { rows, cols } };
}

int64_t
ir_type_numel(Type t)
{
	int64_t n = 1;
	for (int i = 0; i < t.rank; i++)
		n *= t.dims[i];
	return n;
}

bool
ir_type_valid(Type t)
{
	if ((unsigned)t.dtype >= DT_COUNT || t.rank > IR_MAX_RANK || (t.dyn0 && t.rank == 0))
		return false;
	for (int i = 0; i < t.rank; i++)
		if (t.dims[i] <= 0)
			return false;
	return true;
}

bool
ir_type_eq(Type a, Type b)
{
	if (a.dtype != b.dtype || a.rank != b.rank || a.dyn0 != b.dyn0)
		return false;
	for (int i = 0; i < a.rank; i++)
		if (a.dims[i] != b.dims[i])
			return false;
	return true;
}

char *
ir_type_str(Type t, char *buf, size_t n)
{
	size_t k = (size_t)snprintf(buf, n, "%s", ir_dtype_name(t.dtype));
	if (t.rank == 0 || k >= n)
		return buf;
	k += (size_t)snprintf(buf + k, n - k, "[");
	for (int i = 0; i < t.rank && k < n; i++)
		k += (size_t)snprintf(buf + k, n - k, "%s%s%lld", i ? ", " : "",
		                      i == 0 && t.dyn0 ? "<=" : "", (long long)t.dims[i]);
	if (k < n)
		snprintf(buf + k, n - k, "]");
	return buf;
}
