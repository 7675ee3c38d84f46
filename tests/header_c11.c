/* include/connpool.h must compile as strict ISO C11 (-std=c11, no GNU extensions, no
 * feature macros) with -Wall -Wextra -Wpedantic -Werror, on its own. */
#include <connpool.h>
#include <connpool.h> /* include guard */

#include <stdio.h>
#include <string.h>

int main(void)
{
    connpool *pool = connpool_new_default();
    if (pool == NULL)
        return 1;
    if (connpool_acquire(pool, "localhost:80") != -ENOENT)
        return 2;
    connpool_free(pool);
    if (strcmp(connpool_version(), CONNPOOL_VERSION) != 0)
        return 3;
    printf("header_c11: ok (%s)\n", connpool_version());
    return 0;
}
