/* fuzz_check: how a fuzz target reports a broken property: it prints what broke and
 * aborts, which libFuzzer records as a crash and the corpus replay as a failed test. */
#ifndef LOOTLOG_FUZZ_CHECK_H
#define LOOTLOG_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_ASSERT(cond)                                                                  \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: property broken: %s\n", __FILE__, __LINE__, #cond);    \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

#endif
