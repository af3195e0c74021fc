/* cmd_check.c - `elide check`: placeholder until its issue lands; says so and fails. */
#include <stdio.h>

#include "tools/driver.h"

int
cmd_check(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "elide: error: 'check' is not available in this build yet\n");
	return 1;
}
