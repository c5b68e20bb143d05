/*
 * The real node's pod sandbox ("pause") program: holds the pod's namespaces
 * open, reaps the zombies re-parented to it and exits on SIGINT or SIGTERM.
 * Built with `gcc -static` by e2e/cluster/real-node.sh into an image kiln
 * builds and pushes to the node's registry (nothing is pulled from the
 * internet).
 */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) {
    (void)sig;
    _exit(0);
}

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, 0, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction action = {0};
    action.sa_handler = stop;
    sigaction(SIGINT, &action, 0);
    sigaction(SIGTERM, &action, 0);
    action.sa_handler = reap;
    action.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    sigaction(SIGCHLD, &action, 0);
    for (;;) {
        pause();
    }
}
