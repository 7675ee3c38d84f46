/* A deliberate data race, run under ThreadSanitizer to prove the detector is on in the
 * TSan runs (ctest WILL_FAIL: it must be reported). Two threads increment a plain int. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>

static int counter; /* unsynchronised on purpose */

static void *bump(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100000; i++)
        counter++;
    return NULL;
}

int main(void)
{
    pthread_t a, b;
    pthread_create(&a, NULL, bump, NULL);
    pthread_create(&b, NULL, bump, NULL);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    printf("canary: %d (a race TSan must report)\n", counter);
    return 0;
}
