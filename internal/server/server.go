package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"berth.dev/berth/internal/activator"
	"berth.dev/berth/internal/apiserver"
	"berth.dev/berth/internal/autoscaler"
	"berth.dev/berth/internal/backend/local"
	"berth.dev/berth/internal/config"
	"berth.dev/berth/internal/connlimit"
	"berth.dev/berth/internal/controller"
	"berth.dev/berth/internal/egress"
	"berth.dev/berth/internal/gateway"
	"berth.dev/berth/internal/images"
	"berth.dev/berth/internal/network/cni"
	"berth.dev/berth/internal/network/dns"
	"berth.dev/berth/internal/queue"
	"berth.dev/berth/internal/registry"
	"berth.dev/berth/internal/runtime"
	"berth.dev/berth/internal/runtime/containerd"
	"berth.dev/berth/internal/secrets"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/store/bolt"
	"berth.dev/berth/internal/telemetry/logs"
	"berth.dev/berth/internal/telemetry/metrics"
	"berth.dev/berth/internal/telemetry/tracing"
	"berth.dev/berth/internal/workflow/engine"
)

// Server is every part of Berth in one process.
type Server struct {
	cfg config.Config
	log *slog.Logger

	token      string
	store      *bolt.Store
	supervisor *containerd.Supervisor
	driver     *containerd.Driver
	network    *cni.Manager
	gateway    *gateway.Gateway
	bridges    *gateway.Listeners // the gateway on each environment's bridge
	dns        *dns.Server        // each environment's DNS on its bridge
	queue      *queue.Queue
	tracing    *tracing.Tracing
	metrics    *metrics.Metrics

	apiLn, gwLn net.Listener
	apiSrv      *http.Server
	gwSrv       *http.Server

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New checks the configuration; Run builds and starts the parts.
func New(cfg config.Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: logger}, nil
}

// APIAddr and GatewayAddr are the addresses actually listened on (useful
// with port 0).
func (s *Server) APIAddr() string     { return s.apiLn.Addr().String() }
func (s *Server) GatewayAddr() string { return s.gwLn.Addr().String() }

// Token is the admin token.
func (s *Server) Token() string { return s.token }

// Run starts everything, calls ready, and blocks until ctx ends; then it
// stops the parts in reverse order. Containers keep running: a restarted
// server re-attaches to them.
func (s *Server) Run(ctx context.Context, ready func(*Server)) error {
	err := s.start(ctx)
	if err != nil {
		s.stop()
		return err
	}
	s.log.Info("berth server ready", "api", "http://"+s.APIAddr(), "gateway", "http://"+s.GatewayAddr(), "data_dir", s.cfg.DataDir)
	if ready != nil {
		ready(s)
	}
	<-ctx.Done()
	s.log.Info("berth server stopping")
	s.stop()
	return nil
}

func (s *Server) start(ctx context.Context) error {
	cfg := s.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o711); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	for _, d := range []string{cfg.LogDir(), cfg.VolumeDir(), cfg.NetworkDir(), cfg.RunDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
	}
	tok, err := loadOrCreateToken(cfg.TokenPath())
	if err != nil {
		return err
	}
	s.token = tok

	// Listen first: a port conflict should fail before anything else
	// starts.
	if s.apiLn, err = net.Listen("tcp", cfg.APIAddr); err != nil {
		return fmt.Errorf("--api %s: %w", cfg.APIAddr, err)
	}
	if s.gwLn, err = net.Listen("tcp", cfg.GatewayAddr); err != nil {
		return fmt.Errorf("--gateway %s: %w", cfg.GatewayAddr, err)
	}

	if s.store, err = bolt.Open(cfg.StorePath(), bolt.Options{Logger: s.log.With("part", "store")}); err != nil {
		return err
	}
	if err := apiserver.EnsureDefaultEnvironment(ctx, s.store); err != nil {
		return err
	}
	// Secrets are sealed with a key of this data dir (0600) before they
	// reach the store; the agent opens them when it creates a container.
	key, err := secrets.LoadOrCreateKey(filepath.Join(cfg.DataDir, "secrets.key"))
	if err != nil {
		return fmt.Errorf("secrets key: %w", err)
	}
	box, err := secrets.NewBox(key)
	if err != nil {
		return fmt.Errorf("secrets key: %w", err)
	}
	values := secrets.New(s.store, box)
	auth := apiserver.NewRoleAuthorizer(s.token, s.store)

	socket := cfg.ContainerdSocket
	if socket == "" {
		s.supervisor, err = containerd.StartContainerd(ctx, containerd.SupervisorConfig{
			Dir:    cfg.ContainerdDir(),
			Logger: s.log.With("part", "containerd"),
		})
		if err != nil {
			return fmt.Errorf("start containerd: %w", err)
		}
		socket = s.supervisor.Socket()
	}
	s.driver, err = containerd.New(ctx, containerd.Config{
		Socket:    socket,
		Namespace: cfg.ContainerdNamespace,
		LogShim:   cfg.LogShim,
		StateDir:  filepath.Join(cfg.RunDir(), "containers"),
		Logger:    s.log.With("part", "runtime"),
	})
	if err != nil {
		return fmt.Errorf("containerd at %s: %w", socket, err)
	}
	s.network, err = cni.New(ctx, cni.Config{
		DataDir:      cfg.NetworkDir(),
		PluginDirs:   cfg.CNIPluginDirs,
		SubnetPool:   cfg.SubnetPool,
		BridgePrefix: cfg.BridgePrefix,
		Domain:       cfg.Domain,
		Logger:       s.log.With("part", "network"),
	})
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}

	s.tracing, err = tracing.New(tracing.Config{
		OTLPEndpoint: cfg.OTLPEndpoint, SampleRatio: cfg.TraceSampleRatio, StoreSize: cfg.TraceStoreSize,
		Logger: s.log.With("part", "tracing"),
	})
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	var stats runtime.StatsReader
	if sr, ok := runtime.Driver(s.driver).(runtime.StatsReader); ok {
		stats = sr
	}
	view := metrics.NewStoreView(s.store, s.log.With("part", "metrics"))
	s.metrics = metrics.New(metrics.Config{Inventory: view.Inventory, Driver: stats, Logger: s.log.With("part", "metrics")})
	s.gateway = gateway.New(gateway.Config{
		Logger: s.log.With("part", "gateway"), Domain: cfg.Domain, SpoolDir: cfg.RunDir(),
		TracerProvider: s.tracing.TracerProvider(),
	})
	s.bridges = gateway.NewListeners(s.gateway, 80, s.log.With("part", "gateway"))
	s.dns = dns.New(dns.Config{Names: s.gateway, Domain: cfg.Domain, Logger: s.log.With("part", "dns")})
	// The built-in registry shares the API address at /v2/, with its own
	// auth challenge and error bodies; pulls from loopback (the platform's
	// own containerd) need no token. Repositories ENV/... are environment
	// ENV's: its tokens write them and its quota counts their bytes.
	owners := images.NewOwners(images.StoreEnvironments(s.store))
	reg, err := registry.New(registry.Config{
		Dir:           filepath.Join(cfg.DataDir, "registry"),
		Authorizer:    auth.RegistryAuthorizer(owners),
		AnonymousPull: true,
		Quota:         owners.RegistryQuota,
		Logger:        s.log.With("part", "registry"),
	})
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	imgs := images.New(images.Config{
		Node: s.driver, Registry: reg, RegistryAddr: s.APIAddr(), Owners: owners,
		Logger: s.log.With("part", "images"),
	})
	invoker := &gatewayInvoker{gateway: s.gateway, domain: cfg.Domain}
	// Outgoing calls made for an environment (workflow http tasks, async
	// callbacks) keep its seal; its own services are reached by name
	// through its gateway listener.
	egr, err := egress.New(egress.Config{Networks: s.network, Doors: s.bridges, Domain: cfg.Domain, Logger: s.log.With("part", "egress")})
	if err != nil {
		return fmt.Errorf("egress: %w", err)
	}
	s.queue, err = queue.Open(ctx, queue.Config{
		Dir: filepath.Join(cfg.DataDir, "queue"), Invoker: invoker, Egress: egr,
		Logger: s.log.With("part", "queue"),
	})
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}

	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	agent := local.New(local.Config{
		Store: s.store, Driver: s.driver, Network: s.network, Drainer: s.gateway,
		LogDir: cfg.LogDir(), VolumeDir: cfg.VolumeDir(), StateDir: cfg.RunDir(),
		Secrets: values,
		Logger:  s.log.With("part", "agent"),
	})
	services := controller.NewServices(controller.ServiceConfig{
		Store: s.store, Images: imgs, Events: local.RecordEvent,
		Logger: s.log.With("part", "services"),
	})

	// Functions: the autoscaler samples the gateway and tells the function
	// controller; the activator sits between the routes controller and the
	// gateway, holding requests at zero until an endpoint is ready.
	var functions *controller.Functions
	routesSynced := make(chan struct{})
	scaler := autoscaler.New(autoscaler.Config{
		Source: s.gateway,
		Logger: s.log.With("part", "autoscaler"),
		OnChange: func(env, name string, _ int) {
			if functions != nil {
				functions.Enqueue(env, name)
			}
		},
	})
	act := activator.New(activator.Config{
		Table: s.gateway, Store: s.store, Demand: scaler.Demand,
		TracerProvider: s.tracing.TracerProvider(),
		Logger:         s.log.With("part", "activator"),
	})
	s.gateway.SetActivator(act)
	functions = controller.NewFunctions(controller.FunctionConfig{
		Store: s.store, Images: imgs, Events: local.RecordEvent,
		Scaler: scalerAdapter{scaler}, Stats: &loadStats{gateway: s.gateway, activator: act},
		OnFunctions: s.setQueueFunctions, RoutesSynced: routesSynced,
		Logger: s.log.With("part", "functions"),
	})
	routes := &controller.Routes{
		Store: s.store, Table: act, EndpointID: local.ContainerID, Synced: routesSynced,
		Logger: s.log.With("part", "routes"),
	}
	environments := controller.NewEnvironments(controller.EnvironmentConfig{
		Store: s.store, Network: s.network, Policy: s.gateway,
		Listeners: []controller.EnvironmentListener{s.bridges, s.dns},
		Logger:    s.log.With("part", "environments"),
	})
	s.goRun(runCtx, "environments", environments.Run)
	s.goRun(runCtx, "agent", agent.Run)
	s.goRun(runCtx, "services", services.Run)
	s.goRun(runCtx, "functions", functions.Run)
	s.goRun(runCtx, "autoscaler", scaler.Run)
	s.goRun(runCtx, "routes", routes.Run)
	s.goRun(runCtx, "metrics-view", view.Run)

	// Workflows call functions and services through the gateway, like any
	// other caller, so they wake functions and are traced and counted.
	workflowMetrics := metrics.NewWorkflows()
	workflows := engine.New(engine.Config{
		Store: s.store, Invoker: invoker, Services: &serviceCaller{gateway: s.gateway, domain: cfg.Domain},
		Egress: egr, TracerProvider: s.tracing.TracerProvider(), Observer: workflowMetrics,
		Logger: s.log.With("part", "workflow"),
	})
	if err := s.metrics.Register(s.gateway.Collector(), act.Collector(), s.queue.Collector(), workflowMetrics); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	s.goRun(runCtx, "workflow", workflows.Run)
	janitor := logs.NewJanitor(logs.JanitorConfig{
		Root: cfg.LogDir(), Store: s.store, MaxAge: cfg.LogMaxAge, MaxBytes: cfg.LogMaxBytes,
		Logger: s.log.With("part", "logs"),
	})
	s.goRun(runCtx, "logs-janitor", janitor.Run)

	capacity, err := apiserver.HostCapacity()
	if err != nil {
		s.log.Warn("workloads are not checked against the node's capacity", "err", err)
	}
	api := apiserver.New(apiserver.Config{
		Store: s.store, Token: s.token, Authorizer: auth, Values: values, Images: imgs, LogDir: cfg.LogDir(),
		Invocations: invocations{gatewayInvoker: invoker, q: s.queue},
		Executions:  workflows,
		Traces:      s.tracing,
		Logger:      s.log.With("part", "api"),
		Capacity:    capacity,
	})
	s.goRun(runCtx, "registry", reg.Run)
	mux := http.NewServeMux()
	mux.Handle("/v2/", reg.Handler())
	mux.Handle("/", api.WithMetrics(s.metrics, cfg.MetricsPublic))
	// Bounded per listener and per client, with no whole-request
	// deadline that would cut streams (package connlimit).
	s.apiSrv = connlimit.NewServer(mux, connlimit.DefaultTimeouts)
	s.gwSrv = connlimit.NewServer(s.gateway, connlimit.DefaultTimeouts)
	s.serve("api", s.apiSrv, connlimit.NewListener(s.apiLn, "api", connlimit.APILimits, s.log.With("part", "api")))
	s.serve("gateway", s.gwSrv, connlimit.NewListener(s.gwLn, "gateway", connlimit.GatewayLimits, s.log.With("part", "gateway")))

	return writeClientConfig(cfg.ClientConfigPath(), "http://"+s.APIAddr(), s.token, s.GatewayAddr())
}

func (s *Server) goRun(ctx context.Context, part string, run func(context.Context) error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := run(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("part stopped", "part", part, "err", err)
		}
	}()
}

func (s *Server) serve(part string, srv *http.Server, ln net.Listener) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("listener stopped", "part", part, "err", err)
		}
	}()
}

// stop is safe after a partial start: each part is stopped only if built.
func (s *Server) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s.apiSrv != nil {
		_ = s.apiSrv.Shutdown(ctx)
	} else if s.apiLn != nil {
		s.apiLn.Close()
	}
	if s.gwSrv != nil {
		_ = s.gwSrv.Shutdown(ctx)
	} else if s.gwLn != nil {
		s.gwLn.Close()
	}
	if s.cancel != nil {
		s.cancel()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("parts did not stop within the deadline")
	}
	// After the environments controller stopped: it opens these.
	if s.bridges != nil {
		_ = s.bridges.Shutdown(ctx)
	}
	if s.dns != nil {
		s.dns.Close()
	}
	if s.queue != nil {
		s.queue.Close()
	}
	if s.tracing != nil {
		// Flushes what is queued for the OTLP collector.
		_ = s.tracing.Shutdown(ctx)
	}
	if s.driver != nil {
		s.driver.Close()
	}
	// A containerd we started keeps running on purpose (s.supervisor is
	// not stopped): the shims hold the workloads, and the next server
	// reuses that containerd and re-attaches to them.
	if s.store != nil {
		s.store.Close()
	}
}

// Store exposes the store to in-process tests.
func (s *Server) Store() store.Store { return s.store }

func loadOrCreateToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read token: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(raw[:])
	if err := writeFileAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write token: %w", err)
	}
	return tok, nil
}

func writeClientConfig(path, addr, token, gw string) error {
	b, _ := json.MarshalIndent(map[string]string{"addr": addr, "token": token, "gateway": gw}, "", "  ")
	return writeFileAtomic(path, append(b, '\n'), 0o600)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
