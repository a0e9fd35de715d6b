/* A stand-in for libnvidia-ml.so.1 in tests: the cards come from the
 * NVML_STUB_CARDS environment variable, one per ';'-separated entry:
 *   UUID,NAME,FREE_BYTES,ECC_ERRORS
 * e.g. "GPU-a,Tesla P40,24000000000,0;GPU-b,Tesla P40,24000000000,3".
 * Only the calls the runner makes are implemented; nvml-wrapper reports the
 * others as missing symbols. Build: cc -shared -fPIC -o libnvidia-ml.so.1 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { char uuid[96]; char name[96]; unsigned long long free; unsigned long long ecc; } card_t;
typedef struct { unsigned int version; unsigned long long total, reserved, free, used; } memory_v2_t;

static card_t cards[16];
static unsigned int count;

int nvmlInit_v2(void) {
    const char *spec = getenv("NVML_STUB_CARDS");
    char copy[4096], *save = NULL;
    count = 0;
    if (spec == NULL) return 0;
    snprintf(copy, sizeof copy, "%s", spec);
    for (char *entry = strtok_r(copy, ";", &save); entry && count < 16; entry = strtok_r(NULL, ";", &save)) {
        card_t *card = &cards[count];
        if (sscanf(entry, "%95[^,],%95[^,],%llu,%llu", card->uuid, card->name, &card->free, &card->ecc) == 4) count++;
    }
    return 0;
}
int nvmlShutdown(void) { return 0; }
const char *nvmlErrorString(int result) { return result == 0 ? "Success" : "Stub error"; }
int nvmlDeviceGetCount_v2(unsigned int *n) { *n = count; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void **device) {
    if (i >= count) return 2; /* NVML_ERROR_INVALID_ARGUMENT */
    *device = &cards[i];
    return 0;
}
int nvmlDeviceGetName(void *device, char *name, unsigned int length) {
    snprintf(name, length, "%s", ((card_t *)device)->name);
    return 0;
}
int nvmlDeviceGetUUID(void *device, char *uuid, unsigned int length) {
    snprintf(uuid, length, "%s", ((card_t *)device)->uuid);
    return 0;
}
int nvmlDeviceGetMemoryInfo_v2(void *device, memory_v2_t *memory) {
    card_t *card = device;
    memory->total = card->free;
    memory->reserved = 0;
    memory->free = card->free;
    memory->used = 0;
    return 0;
}
int nvmlDeviceGetTotalEccErrors(void *device, int type, int counter, unsigned long long *errors) {
    (void)type; (void)counter;
    *errors = ((card_t *)device)->ecc;
    return 0;
}
