// Command echo is the workload Berth's tests run in containers: a static
// HTTP server that answers on $PORT and can be told to misbehave (fail its
// liveness probe, exit, eat memory, sleep) so tests can watch the platform
// react.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"berth.dev/berth/internal/testutil/echoapp"
)

var (
	hogMB     = flag.Int("hog-mb", 0, "allocate and touch this many MiB at start, then serve")
	printCaps = flag.Bool("print-caps", false, "print CapEff and NoNewPrivs from /proc/self/status, then exit")
	exitCode  = flag.Int("exit", -1, "print a line and exit with this code at once")
	forkBomb  = flag.Int("fork-bomb", 0, "start up to this many copies of itself that wait forever, stop at the first that fails to start, print how many started, then exit")
	wait      = flag.Bool("wait", false, "wait forever (a fork bomb's child)")
)

var hogged [][]byte

func main() {
	flag.Parse()
	if *printCaps {
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "CapEff:") || strings.HasPrefix(l, "CapBnd:") || strings.HasPrefix(l, "NoNewPrivs:") {
				fmt.Println(l)
			}
		}
		return
	}
	if *wait {
		for {
			time.Sleep(time.Hour)
		}
	}
	if *forkBomb > 0 {
		bomb(*forkBomb)
		return
	}
	if *exitCode >= 0 {
		fmt.Printf("exiting with %d\n", *exitCode)
		os.Exit(*exitCode)
	}
	if *hogMB > 0 {
		fmt.Printf("hogging %d MiB\n", *hogMB)
		hog(*hogMB)
	}

	term := make(chan struct{})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		close(term)
	}()
	host, _ := os.Hostname()
	os.Exit(echoapp.Serve(echoapp.Env{
		Getenv:    os.Getenv,
		Environ:   os.Environ(),
		Hostname:  host,
		Stdout:    os.Stdout,
		Listen:    func(addr string) (net.Listener, error) { return net.Listen("tcp", addr) },
		Terminate: term,
		Hog:       hog,
	}))
}

// bomb starts up to n children that wait forever and reports how far it
// got. Its children die with it: it is the container's init process.
func bomb(n int) {
	self, err := os.Executable()
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	for i := 0; i < n; i++ {
		c := exec.Command(self, "-wait")
		// One P each keeps every child to a few threads, so the bomb is
		// about processes.
		c.Env = []string{"GOMAXPROCS=1"}
		if err := c.Start(); err != nil {
			fmt.Printf("fork bomb: %d started, then: %v\n", i, err)
			return
		}
	}
	fmt.Printf("fork bomb: %d started, none refused\n", n)
}

func hog(mb int) {
	b := make([]byte, mb<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	hogged = append(hogged, b)
}
