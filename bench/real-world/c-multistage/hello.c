#include <stdio.h>

int main(void) {
    unsigned long sum = 0;
    for (unsigned long i = 0; i < 1000000; i++) {
        sum += i % 7;
    }
    printf("hello from C for %s (%lu)\n", TARGETARCH, sum);
    return 0;
}
