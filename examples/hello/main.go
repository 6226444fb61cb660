// hello is the example service: an HTTP server on $PORT that greets, counts
// visits in a file on its volume (so the count survives restarts and new
// revisions), and shuts down gracefully on SIGTERM.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	dataDir := os.Getenv("DATA_DIR")
	if dataDir == "" {
		dataDir = "/data"
	}
	greeting := os.Getenv("GREETING")
	if greeting == "" {
		greeting = "Hello from Berth"
	}
	var mu sync.Mutex
	counter := filepath.Join(dataDir, "visits")

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n := 0
		if b, err := os.ReadFile(counter); err == nil {
			n, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		n++
		_ = os.WriteFile(counter, []byte(strconv.Itoa(n)), 0o644)
		mu.Unlock()
		host, _ := os.Hostname()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"message":     greeting,
			"instance":    host,
			"environment": os.Getenv("BERTH_ENVIRONMENT"),
			"revision":    os.Getenv("BERTH_REVISION"),
			"visits":      n,
		})
		log.Printf("%s %s visit %d", r.Method, r.URL.Path, n)
	})
	srv := &http.Server{Addr: ":" + port, Handler: mux}
	go func() {
		log.Printf("listening on :%s", port)
		if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			log.Fatal(err)
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	log.Print("shutting down")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}
