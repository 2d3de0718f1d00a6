/*
 * A mock libnvidia-ml.so.1: the subset of the NVML C API that kray's PyNvml reaches through
 * nvidia-ml-py (pynvml), with the struct layouts and symbol versions of the real nvml.h, so the
 * real ctypes path runs on machines without a GPU.
 *
 * Configuration: $KRAY_MOCK_NVML_CONFIG names a line-based text file read by nvmlInit:
 *   gpu uuid=GPU-0 name=NVIDIA_H200 mem=150754820096 bus=00000000:18:00.0 cc=9.0 minor=0 mig=0 links=18
 *       util=35 used=1073741824
 *       (one line per GPU, in index order; '_' in name is a space; mig=-1: MIG not supported;
 *        links = NVLink links the GPU has, 0 for a PCIe card; util = percent busy, -1: the GPU
 *        does not report it (NOT_SUPPORTED); used = bytes of memory in use, at most mem;
 *        util and used default to 0, an idle GPU)
 *   nvlink <gpu> <gpu> <n>        n links between two GPUs (both ends get them)
 *   nvlink <gpu> <bus-id> <n>     n links from a GPU to an NVSwitch (or any non-GPU) bus id
 *   ancestor <gpu> <gpu> <level>  NVML_TOPOLOGY_* of the pair (default SYSTEM, 50)
 *   driver <version>
 * Without the variable, nvmlInit fails with NVML_ERROR_DRIVER_NOT_LOADED, as on a host with the
 * library but no kernel driver.
 *
 * Fault injection through files next to the config, re-read on every call that uses them so a
 * test can change them while a process runs:
 *   <config>.events  lines "<uuid> <xid>" (uuid "-" for an event NVML cannot attribute),
 *                    delivered in order by nvmlEventSetWait_v2 to sets created before the line
 *                    was appended (NVML, too, delivers only events that happen after registering)
 *   <config>.lost    one uuid per line: that GPU answers NVML_ERROR_GPU_IS_LOST
 *   <config>.util    lines "<uuid> <util> <used>": that GPU's utilization and memory in use
 *                    from now on, overriding its gpu line (the last line for a GPU wins; used
 *                    beyond the GPU's memory is cut to it, as a real GPU cannot exceed it)
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Return codes and constants from nvml.h. */
enum {
    NVML_SUCCESS = 0, NVML_ERROR_UNINITIALIZED = 1, NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3, NVML_ERROR_NOT_FOUND = 6, NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9, NVML_ERROR_TIMEOUT = 10, NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25, NVML_ERROR_UNKNOWN = 999,
};
typedef int nvmlReturn_t;
#define NVML_TOPOLOGY_SYSTEM 50
#define NVML_EVENT_TYPE_XID 0x8ULL
#define MAX_GPUS 64
#define MAX_LINKS 64
#define POLL_NS 5000000L /* how often nvmlEventSetWait_v2 looks at the events file: 5 ms */

typedef struct nvmlDevice_st {
    char uuid[96], name[96], bus[32];
    unsigned long long mem;
    int cc_major, cc_minor, mig; /* mig: 1 on, 0 off, -1 not supported */
    int util;                    /* percent busy; -1: NOT_SUPPORTED */
    unsigned long long used;     /* memory in use, bytes */
    unsigned minor, links, used_links;
    char remote[MAX_LINKS][32]; /* bus id at the far end of each active link */
} *nvmlDevice_t;

/* nvmlPciInfo_t as of nvmlDeviceGetPciInfo_v3 (busId moved to the end, 32 bytes). */
typedef struct {
    char busIdLegacy[16];
    unsigned domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned gpu, memory; } nvmlUtilization_t; /* percent of the last sample period */
typedef struct { unsigned version; unsigned long long total, reserved, free, used; } nvmlMemory_v2_t;
#define nvmlMemory_v2 ((unsigned)(sizeof(nvmlMemory_v2_t) | (2 << 24)))

typedef struct {
    nvmlDevice_t device;
    unsigned long long eventType, eventData;
    unsigned gpuInstanceId, computeInstanceId;
} nvmlEventData_t;

typedef struct nvmlEventSet_st {
    unsigned long long types[MAX_GPUS]; /* registered event types, per GPU */
    long offset;                        /* how far into the events file this set has read */
} *nvmlEventSet_t;

static struct nvmlDevice_st gpus[MAX_GPUS];
static unsigned gpu_count;
static int ancestor[MAX_GPUS][MAX_GPUS];
static char driver_version[80] = "550.54.15";
static char config_path[4096];
static int init_count;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- configuration ---------------------------------------------------------------------- */

static int gpu_index(const char *word) {
    char *end;
    long i = strtol(word, &end, 10);
    return (*end == '\0' && i >= 0 && i < (long)gpu_count) ? (int)i : -1;
}

/* A layout that gives a GPU more links than it has is a broken config, not something to trim. */
static int add_link(nvmlDevice_t gpu, const char *remote) {
    if (gpu->used_links >= gpu->links || gpu->used_links >= MAX_LINKS) {
        fprintf(stderr, "mock_nvml: %s has no free NVLink left for %s\n", gpu->uuid, remote);
        return 0;
    }
    char *slot = gpu->remote[gpu->used_links++];
    size_t n = strnlen(remote, sizeof gpu->remote[0] - 1);
    memcpy(slot, remote, n);
    slot[n] = '\0';
    return 1;
}

static int parse_gpu(char *rest) {
    if (gpu_count == MAX_GPUS) return 0;
    nvmlDevice_t g = &gpus[gpu_count];
    memset(g, 0, sizeof *g);
    g->mig = -1;
    for (char *kv = strtok(rest, " \t\n"); kv; kv = strtok(NULL, " \t\n")) {
        char *v = strchr(kv, '=');
        if (!v) return 0;
        *v++ = '\0';
        if (!strcmp(kv, "uuid")) snprintf(g->uuid, sizeof g->uuid, "%s", v);
        else if (!strcmp(kv, "name")) {
            snprintf(g->name, sizeof g->name, "%s", v);
            for (char *c = g->name; *c; c++) if (*c == '_') *c = ' ';
        } else if (!strcmp(kv, "mem")) g->mem = strtoull(v, NULL, 10);
        else if (!strcmp(kv, "bus")) snprintf(g->bus, sizeof g->bus, "%s", v);
        else if (!strcmp(kv, "cc")) sscanf(v, "%d.%d", &g->cc_major, &g->cc_minor);
        else if (!strcmp(kv, "minor")) g->minor = (unsigned)atoi(v);
        else if (!strcmp(kv, "mig")) g->mig = atoi(v);
        else if (!strcmp(kv, "links")) g->links = (unsigned)atoi(v);
        else if (!strcmp(kv, "util")) g->util = atoi(v);
        else if (!strcmp(kv, "used")) g->used = strtoull(v, NULL, 10);
        else return 0;
    }
    gpu_count++;
    return g->uuid[0] != '\0' && g->util <= 100 && g->used <= g->mem;
}

static int load_config(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    gpu_count = 0;
    for (int a = 0; a < MAX_GPUS; a++)
        for (int b = 0; b < MAX_GPUS; b++) ancestor[a][b] = a == b ? 0 : NVML_TOPOLOGY_SYSTEM;
    char line[1024], w1[128], w2[128];
    int ok = 1, n;
    while (ok && fgets(line, sizeof line, f)) {
        char kind[32] = "";
        if (sscanf(line, "%31s", kind) != 1 || kind[0] == '#') continue;
        if (!strcmp(kind, "gpu")) ok = parse_gpu(strstr(line, "gpu") + 3);
        else if (!strcmp(kind, "driver")) ok = sscanf(line, "driver %79s", driver_version) == 1;
        else if (sscanf(line, "nvlink %127s %127s %d", w1, w2, &n) == 3) {
            int a = gpu_index(w1), b = gpu_index(w2);
            ok = a >= 0;
            for (int i = 0; ok && i < n; i++)
                ok = add_link(&gpus[a], b >= 0 ? gpus[b].bus : w2) && (b < 0 || add_link(&gpus[b], gpus[a].bus));
        } else if (sscanf(line, "ancestor %127s %127s %d", w1, w2, &n) == 3) {
            int a = gpu_index(w1), b = gpu_index(w2);
            ok = a >= 0 && b >= 0;
            if (ok) ancestor[a][b] = ancestor[b][a] = n;
        } else ok = 0;
        if (!ok) fprintf(stderr, "mock_nvml: bad line in %s: %s", path, line);
    }
    fclose(f);
    return ok;
}

/* ---- fault files ------------------------------------------------------------------------ */

static FILE *open_beside_config(const char *suffix) {
    char path[sizeof config_path + 16];
    snprintf(path, sizeof path, "%s%s", config_path, suffix);
    return fopen(path, "r");
}

static int is_lost(nvmlDevice_t g) {
    FILE *f = open_beside_config(".lost");
    if (!f) return 0;
    char word[128];
    int lost = 0;
    while (!lost && fscanf(f, "%127s", word) == 1) lost = !strcmp(word, g->uuid);
    fclose(f);
    return lost;
}

/* The GPU's utilization and memory in use now: its gpu line, unless the .util file says otherwise. */
static void current_usage(nvmlDevice_t g, int *util, unsigned long long *used) {
    *util = g->util;
    *used = g->used;
    FILE *f = open_beside_config(".util");
    if (!f) return;
    char line[256], uuid[128];
    int u;
    unsigned long long m;
    while (fgets(line, sizeof line, f)) {
        if (!strchr(line, '\n')) break; /* a line still being written */
        if (sscanf(line, "%127s %d %llu", uuid, &u, &m) == 3 && !strcmp(uuid, g->uuid)) {
            *util = u > 100 ? 100 : u;
            *used = m > g->mem ? g->mem : m;
        }
    }
    fclose(f);
}

/* Checks shared by every per-device call: NVML started, a handle we gave out, GPU still there. */
static nvmlReturn_t check(nvmlDevice_t g) {
    if (init_count == 0) return NVML_ERROR_UNINITIALIZED;
    if (g < gpus || g >= gpus + gpu_count) return NVML_ERROR_INVALID_ARGUMENT;
    return is_lost(g) ? NVML_ERROR_GPU_IS_LOST : NVML_SUCCESS;
}
#define CHECK(g) do { nvmlReturn_t r_ = check(g); if (r_ != NVML_SUCCESS) return r_; } while (0)

static nvmlReturn_t copy_text(char *dst, unsigned length, const char *src) {
    if (!dst) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(src) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(dst, src);
    return NVML_SUCCESS;
}

/* ---- init and system -------------------------------------------------------------------- */

nvmlReturn_t nvmlInitWithFlags(unsigned flags) {
    (void)flags;
    nvmlReturn_t r = NVML_SUCCESS;
    pthread_mutex_lock(&init_lock);
    if (init_count == 0) {
        const char *path = getenv("KRAY_MOCK_NVML_CONFIG");
        if (!path || !*path) r = NVML_ERROR_DRIVER_NOT_LOADED;
        else {
            snprintf(config_path, sizeof config_path, "%s", path);
            if (!load_config(path)) r = NVML_ERROR_UNKNOWN;
        }
    }
    if (r == NVML_SUCCESS) init_count++; /* NVML counts nested inits; each needs a shutdown */
    pthread_mutex_unlock(&init_lock);
    return r;
}

nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }

nvmlReturn_t nvmlShutdown(void) {
    nvmlReturn_t r = NVML_SUCCESS;
    pthread_mutex_lock(&init_lock);
    if (init_count == 0) r = NVML_ERROR_UNINITIALIZED;
    else init_count--;
    pthread_mutex_unlock(&init_lock);
    return r;
}

const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_TIMEOUT: return "Timeout";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH: return "Argument version mismatch";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned length) {
    if (init_count == 0) return NVML_ERROR_UNINITIALIZED;
    return copy_text(version, length, driver_version);
}

/* ---- devices ---------------------------------------------------------------------------- */

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned *count) {
    if (init_count == 0) return NVML_ERROR_UNINITIALIZED;
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    *count = gpu_count;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned index, nvmlDevice_t *device) {
    if (init_count == 0) return NVML_ERROR_UNINITIALIZED;
    if (index >= gpu_count || !device) return NVML_ERROR_INVALID_ARGUMENT;
    CHECK(&gpus[index]);
    *device = &gpus[index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device) {
    if (init_count == 0) return NVML_ERROR_UNINITIALIZED;
    if (!uuid || !device) return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned i = 0; i < gpu_count; i++) {
        if (strcmp(gpus[i].uuid, uuid) != 0) continue;
        CHECK(&gpus[i]);
        *device = &gpus[i];
        return NVML_SUCCESS;
    }
    return NVML_ERROR_NOT_FOUND;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t g, char *uuid, unsigned length) {
    CHECK(g);
    return copy_text(uuid, length, g->uuid);
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t g, char *name, unsigned length) {
    CHECK(g);
    return copy_text(name, length, g->name);
}

nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t g, unsigned *minor) {
    CHECK(g);
    *minor = g->minor;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t g, int *major, int *minor) {
    CHECK(g);
    *major = g->cc_major;
    *minor = g->cc_minor;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t g, unsigned *current, unsigned *pending) {
    CHECK(g);
    if (g->mig < 0) return NVML_ERROR_NOT_SUPPORTED; /* pre-Ampere */
    *current = *pending = (unsigned)g->mig;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t g, nvmlMemory_t *memory) {
    CHECK(g);
    int util;
    unsigned long long used;
    current_usage(g, &util, &used);
    memory->total = g->mem;
    memory->used = used;
    memory->free = g->mem - used;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t g, nvmlMemory_v2_t *memory) {
    CHECK(g);
    if (memory->version != nvmlMemory_v2) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    int util;
    unsigned long long used;
    current_usage(g, &util, &used);
    memory->total = g->mem;
    memory->reserved = 0;
    memory->used = used;
    memory->free = g->mem - used;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t g, nvmlUtilization_t *utilization) {
    CHECK(g);
    if (!utilization) return NVML_ERROR_INVALID_ARGUMENT;
    int util;
    unsigned long long used;
    current_usage(g, &util, &used);
    if (util < 0) return NVML_ERROR_NOT_SUPPORTED; /* e.g. a GeForce board, some vGPU profiles */
    utilization->gpu = (unsigned)util;
    /* memory: the memory controller's busy share, not a fill level; kray does not read it,
     * so a plausible value that moves with the load will do. */
    utilization->memory = (unsigned)util / 2;
    return NVML_SUCCESS;
}

static void fill_pci(nvmlPciInfo_t *pci, const char *bus_id, unsigned device_id) {
    memset(pci, 0, sizeof *pci);
    unsigned function = 0;
    sscanf(bus_id, "%x:%x:%x.%x", &pci->domain, &pci->bus, &pci->device, &function);
    snprintf(pci->busId, sizeof pci->busId, "%s", bus_id);
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%04X:%02X:%02X.%X", pci->domain, pci->bus,
             pci->device, function);
    pci->pciDeviceId = device_id;
    pci->pciSubSystemId = 0x16CB10DE;
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t g, nvmlPciInfo_t *pci) {
    CHECK(g);
    fill_pci(pci, g->bus, 0x233510DE); /* the H200's PCI device id */
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t g, unsigned link, unsigned *active) {
    CHECK(g);
    if (g->links == 0) return NVML_ERROR_NOT_SUPPORTED;
    if (link >= g->links) return NVML_ERROR_INVALID_ARGUMENT;
    *active = link < g->used_links; /* NVML_FEATURE_ENABLED / _DISABLED */
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetNvLinkRemotePciInfo_v2(nvmlDevice_t g, unsigned link, nvmlPciInfo_t *pci) {
    CHECK(g);
    if (g->links == 0) return NVML_ERROR_NOT_SUPPORTED;
    if (link >= g->used_links) return NVML_ERROR_INVALID_ARGUMENT;
    int remote_is_gpu = 0;
    for (unsigned i = 0; i < gpu_count; i++) remote_is_gpu |= !strcmp(gpus[i].bus, g->remote[link]);
    fill_pci(pci, g->remote[link], remote_is_gpu ? 0x233510DE : 0x22A310DE /* NVSwitch */);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTopologyCommonAncestor(nvmlDevice_t a, nvmlDevice_t b, int *level) {
    CHECK(a);
    CHECK(b);
    *level = ancestor[a - gpus][b - gpus];
    return NVML_SUCCESS;
}

/* ---- events ----------------------------------------------------------------------------- */

static long events_file_size(void) {
    FILE *f = open_beside_config(".events");
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    return size;
}

nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
    if (init_count == 0) return NVML_ERROR_UNINITIALIZED;
    if (!set) return NVML_ERROR_INVALID_ARGUMENT;
    *set = calloc(1, sizeof **set);
    (*set)->offset = events_file_size(); /* earlier events are history, not news */
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t g, unsigned long long types, nvmlEventSet_t set) {
    CHECK(g);
    if (!set) return NVML_ERROR_INVALID_ARGUMENT;
    set->types[g - gpus] |= types;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
    if (init_count == 0) return NVML_ERROR_UNINITIALIZED;
    free(set);
    return NVML_SUCCESS;
}

/* The next XID line past the set's offset for a device the set listens to; 1 when found. */
static int next_event(nvmlEventSet_t set, nvmlEventData_t *data) {
    FILE *f = open_beside_config(".events");
    if (!f) return 0;
    fseek(f, set->offset, SEEK_SET);
    char line[256], uuid[128];
    unsigned long long xid;
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        if (!strchr(line, '\n')) break; /* a line still being written: read it next time */
        set->offset += (long)strlen(line);
        if (sscanf(line, "%127s %llu", uuid, &xid) != 2) continue;
        for (unsigned i = 0; i < gpu_count; i++) {
            int unattributed = !strcmp(uuid, "-");
            if (!(set->types[i] & NVML_EVENT_TYPE_XID) || (!unattributed && strcmp(uuid, gpus[i].uuid)))
                continue;
            data->device = unattributed ? NULL : &gpus[i];
            data->eventType = NVML_EVENT_TYPE_XID;
            data->eventData = xid;
            data->gpuInstanceId = data->computeInstanceId = 0xFFFFFFFF; /* not a MIG instance */
            found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned timeoutms) {
    if (init_count == 0) return NVML_ERROR_UNINITIALIZED;
    if (!set || !data) return NVML_ERROR_INVALID_ARGUMENT;
    struct timespec now, deadline, pause = {0, POLL_NS};
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeoutms / 1000;
    deadline.tv_nsec += (long)(timeoutms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) deadline.tv_sec++, deadline.tv_nsec -= 1000000000L;
    for (;;) {
        if (next_event(set, data)) return NVML_SUCCESS;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > deadline.tv_sec || (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec))
            return NVML_ERROR_TIMEOUT;
        nanosleep(&pause, NULL);
    }
}
