/* cmd_compile.c - `elide compile`: placeholder until its issue lands; says so and fails. */
#include <stdio.h>

#include "tools/driver.h"

int
cmd_compile(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "elide: error: 'compile' is not available in this build yet\n");
	return 1;
}
