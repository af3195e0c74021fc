/* abi_load.c - for abi-check.test: loads weights through the generated header it is
 * compiled with, linked with the object of the same or of another compile, and
 * prints the status name. */
#include <stdio.h>

#include "llama.h"
#include "runtime/elide_rt.h"

int
main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	llama_ctx *ctx = llama_create();
	if (!ctx)
		return 3;
	int s = llama_load_weights(ctx, argv[1]);
	printf("%s\n", elide_status_name((elide_status)s));
	llama_destroy(ctx);
	return 0;
}
