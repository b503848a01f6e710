# ------------------------------------------------------------------ SIGBUS guard
# A memory-mapped input that shrinks while it is read (truncated, or rewritten in place
# by another job) makes the next read of a page past its new end raise SIGBUS, which
# would kill the interpreter with "Bus error" and no word of which file it was.
#
# The guard is a process-wide SIGBUS handler (sigaction, SA_SIGINFO). Python registers
# the address range of each input map in a slot. A fault inside a registered range is
# absorbed: the handler maps anonymous zero pages over the rest of that range (one
# mmap(MAP_FIXED) system call, no allocation, no lock), counts the fault in the slot and
# returns, so the kernel, on whichever OpenMP thread, runs on to the end of its call on
# zeros. Python checks the counts after each call and discards the result with an error
# naming the file (docs/reliability.md). A fault anywhere else goes to the handler that
# was installed before (faulthandler's traceback, or the default action), so a real
# crash stays a crash.
#
# The handler is installed once and never re-installed over a handler installed after
# it (that one's "previous" is the guard: re-installing would make a loop).

cdef extern from *:
    """
    #include <errno.h>
    #include <signal.h>
    #include <stdint.h>
    #include <string.h>
    #include <sys/mman.h>
    #include <unistd.h>

    #define CYEXT_GUARD_SLOTS 1024

    typedef struct {
        uintptr_t lo, hi;   /* page-aligned [lo, hi) of one input map */
        int used;
        long faults;        /* faults absorbed in this range since it was registered */
    } cyext_guard_slot;

    static cyext_guard_slot cyext_guard_slots[CYEXT_GUARD_SLOTS];
    static struct sigaction cyext_guard_prev;
    static int cyext_guard_state = 0;   /* 0 not installed, 1 installed */
    static long cyext_guard_total = 0;
    static uintptr_t cyext_guard_pagesize = 4096;

    static void cyext_guard_chain(int sig, siginfo_t* info, void* ctx) {
        struct sigaction prev = cyext_guard_prev;
        if (prev.sa_flags & SA_SIGINFO) {
            prev.sa_sigaction(sig, info, ctx);
        } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
            prev.sa_handler(sig);
        } else {
            /* what would have happened without the guard: the default action (a
               core-dumping termination), delivered as soon as this handler returns */
            struct sigaction dfl;
            memset(&dfl, 0, sizeof dfl);
            dfl.sa_handler = SIG_DFL;
            sigemptyset(&dfl.sa_mask);
            sigaction(sig, &dfl, NULL);
            raise(sig);
        }
    }

    static void cyext_guard_handler(int sig, siginfo_t* info, void* ctx) {
        int saved = errno;
        if (info != NULL && info->si_code > 0) {   /* raised by the kernel, not by kill() */
            uintptr_t a = (uintptr_t)info->si_addr;
            int k;
            for (k = 0; k < CYEXT_GUARD_SLOTS; k++) {
                cyext_guard_slot* s = &cyext_guard_slots[k];
                if (!__atomic_load_n(&s->used, __ATOMIC_ACQUIRE) || a < s->lo || a >= s->hi)
                    continue;
                uintptr_t page = a & ~(cyext_guard_pagesize - 1);
                void* p = mmap((void*)page, s->hi - page, PROT_READ,
                               MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (p == MAP_FAILED)
                    break;
                __atomic_add_fetch(&s->faults, 1, __ATOMIC_SEQ_CST);
                __atomic_add_fetch(&cyext_guard_total, 1, __ATOMIC_SEQ_CST);
                errno = saved;
                return;
            }
        }
        errno = saved;
        cyext_guard_chain(sig, info, ctx);
    }

    static int cyext_guard_is_current(void) {
        struct sigaction cur;
        if (sigaction(SIGBUS, NULL, &cur) != 0)
            return 0;
        return (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == cyext_guard_handler;
    }

    /* 1 when the guard is the current SIGBUS handler (installing it if it never was) */
    static int cyext_guard_install(void) {
        if (cyext_guard_state == 0) {
            struct sigaction sa, prev;
            long ps = sysconf(_SC_PAGESIZE);
            if (ps > 0)
                cyext_guard_pagesize = (uintptr_t)ps;
            memset(&sa, 0, sizeof sa);
            sa.sa_sigaction = cyext_guard_handler;
            sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
            sigemptyset(&sa.sa_mask);
            if (sigaction(SIGBUS, NULL, &prev) != 0)
                return 0;
            cyext_guard_prev = prev;
            if (sigaction(SIGBUS, &sa, NULL) != 0)
                return 0;
            cyext_guard_state = 1;
        }
        return cyext_guard_is_current();
    }

    static int cyext_guard_register(uintptr_t address, uintptr_t length) {
        int k;
        uintptr_t ps = cyext_guard_pagesize;
        for (k = 0; k < CYEXT_GUARD_SLOTS; k++) {
            cyext_guard_slot* s = &cyext_guard_slots[k];
            if (__atomic_load_n(&s->used, __ATOMIC_ACQUIRE))
                continue;
            s->lo = address & ~(ps - 1);
            s->hi = (address + length + ps - 1) & ~(ps - 1);
            __atomic_store_n(&s->faults, 0, __ATOMIC_SEQ_CST);
            __atomic_store_n(&s->used, 1, __ATOMIC_RELEASE);
            return k;
        }
        return -1;
    }

    static void cyext_guard_unregister(int k) {
        if (k >= 0 && k < CYEXT_GUARD_SLOTS)
            __atomic_store_n(&cyext_guard_slots[k].used, 0, __ATOMIC_RELEASE);
    }

    static long cyext_guard_faults(int k) {
        if (k < 0 || k >= CYEXT_GUARD_SLOTS)
            return 0;
        return __atomic_load_n(&cyext_guard_slots[k].faults, __ATOMIC_SEQ_CST);
    }

    static long cyext_guard_total_faults(void) {
        return __atomic_load_n(&cyext_guard_total, __ATOMIC_SEQ_CST);
    }
    """
    int cyext_guard_install() nogil
    int cyext_guard_is_current() nogil
    int cyext_guard_register(size_t address, size_t length) nogil
    void cyext_guard_unregister(int k) nogil
    long cyext_guard_faults(int k) nogil
    long cyext_guard_total_faults() nogil

#: input maps the guard can watch at once (a map beyond that is read unguarded)
GUARD_SLOTS = 1024


def guard_install():
    """Install the SIGBUS guard (once per process); True while it is the current handler.

    False when the platform has no sigaction, or when a handler installed later (for
    example ``faulthandler.enable()`` called after the first input was opened) has
    taken its place: the inputs are then read unguarded.
    """
    return bool(cyext_guard_install())


def guard_active():
    """True when the guard is the current SIGBUS handler."""
    return bool(cyext_guard_is_current())


def guard_register(size_t address, size_t length):
    """Watch the mapped range ``[address, address + length)``; its slot, or -1 when all
    GUARD_SLOTS slots are taken. Installs the guard when needed."""
    cyext_guard_install()
    return cyext_guard_register(address, length)


def guard_unregister(int slot):
    """Stop watching a slot (call before, or as, its map is unmapped)."""
    cyext_guard_unregister(slot)


def guard_faults(int slot):
    """Faults absorbed in a slot's range since it was registered (0: the map read whole)."""
    return cyext_guard_faults(slot)


def guard_total():
    """Faults absorbed in this process so far, in any range (a cheap "anything?" check)."""
    return cyext_guard_total_faults()
