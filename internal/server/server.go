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
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/activator"
	"berth.dev/berth/internal/advisor"
	"berth.dev/berth/internal/apiserver"
	"berth.dev/berth/internal/atomicfile"
	"berth.dev/berth/internal/autoscaler"
	"berth.dev/berth/internal/backend"
	"berth.dev/berth/internal/backend/kubernetes"
	"berth.dev/berth/internal/backend/local"
	"berth.dev/berth/internal/config"
	"berth.dev/berth/internal/connlimit"
	"berth.dev/berth/internal/controller"
	"berth.dev/berth/internal/convert"
	"berth.dev/berth/internal/egress"
	"berth.dev/berth/internal/events"
	"berth.dev/berth/internal/gateway"
	"berth.dev/berth/internal/history"
	"berth.dev/berth/internal/images"
	"berth.dev/berth/internal/informer"
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
	"berth.dev/berth/internal/wasm"
	"berth.dev/berth/internal/web"
	"berth.dev/berth/internal/workflow/engine"
)

// Server is every part of Berth in one process.
type Server struct {
	cfg config.Config
	log *slog.Logger
	// routesSynced is closed once the gateway has its first routing
	// table: the server is ready (GET /readyz).
	routesSynced <-chan struct{}

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
	values     *secrets.Values
	events     *events.Recorder
	images     *images.Service
	registry   *registry.Registry
	auth       *apiserver.RoleAuthorizer
	invoker    *gatewayInvoker
	backend    serverBackend
	egress     *egress.Egress
	clusterSrv *http.Server // the gateway for a cluster's pods
	clusterLn  net.Listener
	workflows  *engine.Engine
	services   *controller.Services
	functions  *controller.Functions
	history    *history.DB
	advisor    *advisor.Advisor
	converter  *convert.Converter
	wasm       *wasm.Host
	state      *state // the environments' object and key-value stores
	parts      []part

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

// start builds the parts in dependency order, then starts their loops.
// Each stage below builds one layer; stop undoes whatever was built.
func (s *Server) start(ctx context.Context) error {
	if err := s.openState(ctx); err != nil {
		return err
	}
	if s.cfg.Backend == "local" {
		if err := s.startRuntime(ctx); err != nil {
			return err
		}
	}
	if err := s.buildDataPlane(ctx); err != nil {
		return err
	}
	if err := s.buildControlPlane(); err != nil {
		return err
	}
	if err := s.buildAPI(); err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	for _, p := range s.parts {
		s.goRun(runCtx, p.name, p.run)
	}
	s.serve("api", s.apiSrv, connlimit.NewListener(s.apiLn, "api", connlimit.APILimits, s.log.With("part", "api")))
	s.serve("gateway", s.gwSrv, connlimit.NewListener(s.gwLn, "gateway", connlimit.GatewayLimits, s.log.With("part", "gateway")))
	if s.clusterSrv != nil {
		ln, err := net.Listen("tcp", s.cfg.ClusterGatewayAddr)
		if err != nil {
			return fmt.Errorf("--cluster-gateway %s: %w", s.cfg.ClusterGatewayAddr, err)
		}
		s.clusterLn = ln
		s.serve("cluster-gateway", s.clusterSrv, connlimit.NewListener(ln, "cluster-gateway", connlimit.GatewayLimits, s.log.With("part", "gateway")))
	}
	return writeClientConfig(s.cfg.ClientConfigPath(), "http://"+s.APIAddr(), s.token, s.GatewayAddr())
}

// serverBackend is what the server asks of a backend: the seam, and the
// log reader the API serves.
type serverBackend interface {
	backend.Backend
}

// checkPullHost vets the registry host of a pull from outside with the
// egress policy (as a call on no environment's behalf: no environment's
// instances, none of the host's addresses, no metadata address).
func (s *Server) checkPullHost(ctx context.Context, host string) error {
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", h)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if err := s.egress.Allowed("", a.Unmap()); err != nil {
			return err
		}
	}
	return nil
}

// noNetworks is a cluster's: Berth knows no subnet per environment there.
type noNetworks struct{}

func (noNetworks) Subnets() map[string]netip.Prefix { return nil }

// part is a loop the server runs until it stops.
type part struct {
	name string
	run  func(context.Context) error
}

func (s *Server) addPart(name string, run func(context.Context) error) {
	s.parts = append(s.parts, part{name, run})
}

// openState makes the data dir, the admin token, the listeners (a port
// conflict should fail before anything else starts) and the store.
func (s *Server) openState(ctx context.Context) error {
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
	if s.apiLn, err = net.Listen("tcp", cfg.APIAddr); err != nil {
		return fmt.Errorf("--api %s: %w", cfg.APIAddr, err)
	}
	if s.gwLn, err = net.Listen("tcp", cfg.GatewayAddr); err != nil {
		return fmt.Errorf("--gateway %s: %w", cfg.GatewayAddr, err)
	}
	if s.store, err = bolt.Open(cfg.StorePath(), bolt.Options{Logger: s.log.With("part", "store")}); err != nil {
		return err
	}
	// The advisor's per-minute traffic history: a file of its own, so a
	// record a minute per workload does not churn the store's watch.
	if s.history, err = history.Open(cfg.HistoryPath(), history.Options{Retention: cfg.HistoryRetention, Logger: s.log.With("part", "history")}); err != nil {
		return err
	}
	if err := apiserver.EnsureDefaultEnvironment(ctx, s.store); err != nil {
		return err
	}
	// Secrets are sealed with a key of this data dir (0600) before they
	// reach the store; the backend opens them when it creates an instance.
	key, err := secrets.LoadOrCreateKey(filepath.Join(cfg.DataDir, "secrets.key"))
	if err != nil {
		return fmt.Errorf("secrets key: %w", err)
	}
	box, err := secrets.NewBox(key)
	if err != nil {
		return fmt.Errorf("secrets key: %w", err)
	}
	s.values = secrets.New(s.store, box)
	s.events = &events.Recorder{Store: s.store}
	s.auth = apiserver.NewRoleAuthorizer(s.token, s.store)
	return nil
}

// startRuntime connects to containerd (starting Berth's own when no socket
// is given) and the CNI network manager.
func (s *Server) startRuntime(ctx context.Context) error {
	cfg := s.cfg
	socket := cfg.ContainerdSocket
	if socket == "" {
		var err error
		s.supervisor, err = containerd.StartContainerd(ctx, containerd.SupervisorConfig{
			Dir:    cfg.ContainerdDir(),
			Logger: s.log.With("part", "containerd"),
		})
		if err != nil {
			return fmt.Errorf("start containerd: %w", err)
		}
		socket = s.supervisor.Socket()
	}
	var err error
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
	return nil
}

// buildDataPlane makes what requests pass through: tracing and metrics,
// the gateway with its environment listeners and DNS, the queue, and the
// backend that runs instances.
func (s *Server) buildDataPlane(ctx context.Context) error {
	cfg := s.cfg
	var err error
	s.tracing, err = tracing.New(tracing.Config{
		OTLPEndpoint: cfg.OTLPEndpoint, SampleRatio: cfg.TraceSampleRatio, StoreSize: cfg.TraceStoreSize,
		Logger: s.log.With("part", "tracing"),
	})
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	var stats runtime.StatsReader
	if s.driver != nil {
		stats = s.driver
	}
	s.metrics = metrics.New(metrics.Config{Inventory: s.inventory, Driver: stats, Logger: s.log.With("part", "metrics")})
	s.gateway = gateway.New(gateway.Config{
		Logger: s.log.With("part", "gateway"), Domain: cfg.Domain, SpoolDir: cfg.RunDir(),
		TracerProvider: s.tracing.TracerProvider(), SampleRatio: s.tracing.SampleRatio(),
		// The routes controller loads the table once the caches are
		// synced, moments after the listeners open.
		WaitForTable: 10 * time.Second,
	})
	// The built-in registry shares the API address at /v2/, with its own
	// auth challenge and error bodies; pulls from loopback (the platform's
	// own containerd) need no token. Repositories ENV/... are environment
	// ENV's: its tokens write them and its quota counts their bytes.
	owners := images.NewOwners(images.StoreEnvironments(s.store))
	s.registry, err = registry.New(registry.Config{
		Dir:           filepath.Join(cfg.DataDir, "registry"),
		Authorizer:    s.auth.RegistryAuthorizer(owners),
		AnonymousPull: true,
		Quota:         owners.RegistryQuota,
		Logger:        s.log.With("part", "registry"),
	})
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	s.addPart("registry", s.registry.Run)
	icfg := images.Config{
		Registry: s.registry, RegistryAddr: s.APIAddr(), NodeAddr: cfg.RegistryAdvertise, Owners: owners,
		CheckHost: s.checkPullHost,
		Logger:    s.log.With("part", "images"),
	}
	if s.driver != nil {
		icfg.Node = s.driver
	}
	s.images = images.New(icfg)
	s.invoker = &gatewayInvoker{gateway: s.gateway, domain: cfg.Domain}
	// On one machine, each environment's gateway and DNS answer on its
	// bridge.
	var nets egress.Networks = noNetworks{}
	var doors egress.Doors
	if cfg.Backend == "local" {
		s.bridges = gateway.NewListeners(s.gateway, 80, s.log.With("part", "gateway"))
		s.dns = dns.New(dns.Config{Names: s.gateway, Domain: cfg.Domain, Logger: s.log.With("part", "dns")})
		nets, doors = s.network, s.bridges
	}
	// Outgoing calls made for an environment (workflow http tasks, async
	// callbacks) keep its seal; its own services are reached by name
	// through its gateway listener.
	s.egress, err = egress.New(egress.Config{Networks: nets, Doors: doors, Domain: cfg.Domain, Logger: s.log.With("part", "egress")})
	if err != nil {
		return fmt.Errorf("egress: %w", err)
	}
	s.queue, err = queue.Open(ctx, queue.Config{
		Dir: filepath.Join(cfg.DataDir, "queue"), Invoker: s.invoker, Egress: s.egress,
		Logger: s.log.With("part", "queue"),
	})
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}

	if err := s.buildState(); err != nil {
		return err
	}
	if err := s.buildBackend(); err != nil {
		return err
	}
	s.addPart("backend", s.backend.Run)
	return nil
}

// buildBackend makes what runs instances: this machine (containerd, CNI
// bridges, the gateway and DNS on each bridge) or a Kubernetes cluster
// (with the gateway listening for its pods).
func (s *Server) buildBackend() error {
	cfg := s.cfg
	if cfg.Backend == "kubernetes" {
		advertise := cfg.ClusterGatewayAdvertise
		if advertise == "" {
			advertise = cfg.ClusterGatewayAddr
		}
		kb, err := kubernetes.New(kubernetes.Config{
			Kubeconfig: cfg.Kubeconfig, NamespacePrefix: cfg.NamespacePrefix,
			Gateway: advertise, GatewayNamespace: cfg.GatewayNamespace,
			ImageRef: s.images.NodeRef,
			Secrets:  s.values, Events: s.events,
			Logger: s.log.With("part", "backend"),
		})
		if err != nil {
			return err
		}
		if err := kb.Check(context.Background()); err != nil {
			return err
		}
		s.backend = kb
		s.clusterSrv = connlimit.NewServer(s.gateway.ForCallers(kb.EnvironmentOf), connlimit.DefaultTimeouts)
		s.clusterSrv.Protocols = gateway.Protocols()
		return nil
	}
	standbyMem, err := cfg.StandbyMemoryBytes()
	if err != nil {
		return err
	}
	s.backend = local.New(local.Config{
		Store: s.store, Driver: s.driver, Network: s.network, Drainer: s.gateway,
		Listeners: []local.EnvironmentListener{s.bridges, s.dns},
		Events:    s.events, Secrets: s.values, InstanceEnv: s.instanceEnv,
		LogDir: cfg.LogDir(), VolumeDir: cfg.VolumeDir(), StateDir: cfg.RunDir(),
		StandbyMemory: standbyMem,
		Logger:        s.log.With("part", "backend"),
	})
	return nil
}

// buildControlPlane makes the caches and the loops that turn desired state
// into what the backend runs: environments, services, functions (with the
// autoscaler and the activator), routes, workflows, log retention.
func (s *Server) buildControlPlane() error {
	cfg := s.cfg
	icfg := func(kind string) informer.Config {
		return informer.Config{Store: s.store, Kind: kind, Logger: s.log.With("part", "informer", "kind", kind)}
	}
	envs := informer.New[v1.Environment](icfg(v1.KindEnvironment))
	svcs := informer.New[v1.Service](icfg(v1.KindService))
	fns := informer.New[v1.Function](icfg(v1.KindFunction))
	revs := controller.NewRevisionInformer(icfg(v1.KindRevision))

	environments := controller.NewEnvironments(controller.EnvironmentConfig{
		Store: s.store, Environments: envs, Backend: s.backend, Policy: s.gateway,
		Logger: s.log.With("part", "environments"),
	})
	services := controller.NewServices(controller.ServiceConfig{
		Store: s.store, Services: svcs, Revisions: revs, Backend: s.backend,
		Images: s.images, Events: s.events,
		Logger: s.log.With("part", "services"),
	})

	// Functions: the autoscaler samples the gateway and tells the function
	// controller; the activator sits between the routes controller and the
	// gateway, holding requests at zero until an endpoint is ready.
	var functions *controller.FunctionController
	routesSynced := make(chan struct{})
	s.routesSynced = routesSynced
	scaler := autoscaler.New(autoscaler.Config{
		Source:      s.gateway,
		MaxStandbys: cfg.MaxStandbys,
		Logger:      s.log.With("part", "autoscaler"),
		OnChange: func(env, name string, _ int) {
			if functions != nil {
				functions.Enqueue(env, name)
			}
		},
	})
	s.keepGaps(scaler)
	act := activator.New(activator.Config{
		Table: s.gateway, Demand: scaler.Demand,
		Instances: func(env, name string) []v1.InstanceStatus {
			return s.backend.Instances(backend.Ref{Kind: v1.KindFunction, Environment: env, Name: name})
		},
		TracerProvider: s.tracing.TracerProvider(),
		Logger:         s.log.With("part", "activator"),
	})
	s.gateway.SetActivator(act)
	// Wasm functions run in this process; compiled code is cached under
	// the data dir so that a restart does not compile again.
	wasmHost, err := wasm.New(wasm.Config{
		CacheDir: filepath.Join(cfg.DataDir, "wasm-cache"), LogDir: cfg.LogDir(),
		TracerProvider: s.tracing.TracerProvider(), Logger: s.log.With("part", "wasm"),
		// A module's outgoing calls keep its environment's seal, as a
		// container's do.
		Egress: s.egress,
	})
	if err != nil {
		return err
	}
	s.wasm = wasmHost
	functions = controller.NewFunctions(controller.FunctionConfig{
		Store: s.store, Functions: fns, Revisions: revs, Backend: s.backend,
		Images: s.images, Events: s.events,
		Scaler: scalerAdapter{scaler}, Stats: &loadStats{gateway: s.gateway, activator: act},
		OnFunctions: s.setQueueFunctions, RoutesSynced: routesSynced,
		Wasm: wasmHost, WasmModules: s.images, Values: s.values,
		Logger: s.log.With("part", "functions"),
	})
	routes := controller.NewRoutes(controller.RoutesConfig{
		Services: svcs, Functions: fns, Backend: s.backend, Table: act, Synced: routesSynced, Wasm: wasmHost,
		Logger: s.log.With("part", "routes"),
	})
	for _, inf := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"informer-environments", envs.Run}, {"informer-services", svcs.Run},
		{"informer-functions", fns.Run}, {"informer-revisions", revs.Run},
	} {
		s.addPart(inf.name, inf.run)
	}
	s.addPart("environments", environments.Run)
	s.addPart("services", services.Run)
	s.addPart("functions", functions.Run)
	s.addPart("autoscaler", scaler.Run)
	s.addPart("routes", routes.Run)
	s.addPart("canaries", controller.NewCanaries(controller.CanaryConfig{
		Store: s.store, Services: svcs, Functions: fns, Stats: s.gateway, Events: s.events,
		Logger: s.log.With("part", "canaries"),
	}).Run)
	s.addPart("events-pruner", func(ctx context.Context) error {
		return events.RunPruner(ctx, s.store, 30*time.Second, func(err error) {
			s.log.Warn("prune events", "err", err)
		})
	})
	s.services, s.functions = svcs, fns

	// Workflows call functions and services through the gateway, like any
	// other caller, so they wake functions and are traced and counted.
	workflowMetrics := metrics.NewWorkflows()
	s.workflows = engine.New(engine.Config{
		Store: s.store, Invoker: s.invoker, Services: &serviceCaller{gateway: s.gateway, domain: cfg.Domain},
		Egress: s.egress, TracerProvider: s.tracing.TracerProvider(), Observer: workflowMetrics,
		Logger: s.log.With("part", "workflow"),
	})
	if err := s.metrics.Register(s.gateway.Collector(), act.Collector(), s.queue.Collector(), workflowMetrics, wasmHost.Collector()); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if lb, ok := s.backend.(*local.Backend); ok {
		if err := s.metrics.Register(lb.Collector()); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	s.addPart("workflow", s.workflows.Run)
	if err := s.buildAdvisor(svcs, fns, act, routes); err != nil {
		return err
	}
	janitor := logs.NewJanitor(logs.JanitorConfig{
		Root: cfg.LogDir(), Store: s.store, MaxAge: cfg.LogMaxAge, MaxBytes: cfg.LogMaxBytes,
		Logger: s.log.With("part", "logs"),
	})
	s.addPart("logs-janitor", janitor.Run)
	return nil
}

// inventory is what the instance gauges count, read from the caches on
// every scrape (never from the store).
func (s *Server) inventory() metrics.Inventory {
	if s.services == nil || s.functions == nil {
		return metrics.Inventory{}
	}
	inv := metrics.Inventory{Services: s.services.List(""), Functions: s.functions.List("")}
	add := func(kind, env, name string) {
		for _, st := range s.backend.Instances(backend.Ref{Kind: kind, Environment: env, Name: name}) {
			inv.Instances = append(inv.Instances, &v1.Instance{
				Metadata: v1.ObjectMeta{Name: st.Name, Environment: env},
				Spec:     v1.InstanceSpec{Owner: name, OwnerKind: kind, Revision: st.Revision, Draining: st.Phase == v1.PhaseTerminating},
				Status:   st,
			})
		}
	}
	for _, sv := range inv.Services {
		add(v1.KindService, sv.Metadata.Environment, sv.Metadata.Name)
	}
	for _, f := range inv.Functions {
		add(v1.KindFunction, f.Metadata.Environment, f.Metadata.Name)
	}
	return inv
}

// buildAPI makes the HTTP API and the OCI registry that shares its
// address, and the two HTTP servers.
func (s *Server) buildAPI() error {
	cfg := s.cfg
	capacity, err := apiserver.HostCapacity()
	if err != nil {
		s.log.Warn("workloads are not checked against the node's capacity", "err", err)
	}
	api := apiserver.New(apiserver.Config{
		Ready: s.ready,
		Store: s.store, Token: s.token, Authorizer: s.auth, Values: s.values, Images: s.images,
		Logs:        s.backend,
		Invocations: invocations{gatewayInvoker: s.invoker, q: s.queue},
		Executions:  s.workflows,
		Traces:      s.tracing,
		Logger:      s.log.With("part", "api"),
		Capacity:    capacity,
		Advisor:     s.advisor,
		Converter:   s.converter,
		Objects:     s.state.objects, KV: kvAPI{s.state}, AccessKeys: s.state.keys,
	})
	apiHandler := api.WithMetrics(s.metrics, cfg.MetricsPublic)
	// The dashboard calls that same handler with each user's token.
	dash, err := web.New(web.Config{API: apiHandler, Gateway: s.GatewayAddr(), Domain: cfg.Domain,
		Logger: s.log.With("part", "dashboard")})
	if err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	s.addPart("dashboard", dash.Run)
	mux := http.NewServeMux()
	mux.Handle("/v2/", s.registry.Handler())
	mux.Handle("/ui/", dash.Handler())
	mux.Handle("/", s.awsAPIs(apiHandler))
	// Bounded per listener and per client, with no whole-request
	// deadline that would cut streams (package connlimit).
	s.apiSrv = connlimit.NewServer(mux, connlimit.DefaultTimeouts)
	s.gwSrv = connlimit.NewServer(s.gateway, connlimit.DefaultTimeouts)
	s.gwSrv.Protocols = gateway.Protocols()
	return nil
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
	if s.clusterSrv != nil && s.clusterLn != nil {
		_ = s.clusterSrv.Shutdown(ctx)
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
	if s.wasm != nil {
		_ = s.wasm.Close(ctx)
	}
	s.state.close()
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
	if s.history != nil {
		// After the recorder stopped: it writes its last minute.
		s.history.Close()
	}
	if s.store != nil {
		s.store.Close()
	}
}

// buildAdvisor makes the traffic history's recorder and retention, the
// advisor that replays it, and the converter that switches a workload's
// kind.
func (s *Server) buildAdvisor(svcs *controller.Services, fns *controller.Functions, act *activator.Activator, routes *controller.Routes) error {
	totals, err := history.NewCollectorTotals(s.gateway.Collector(), act.Collector())
	if err != nil {
		return err
	}
	rec := history.NewRecorder(history.Config{
		DB:     s.history,
		Source: historySource{services: svcs, functions: fns, gateway: s.gateway, backend: s.backend},
		Usage:  historySource{backend: s.backend},
		Totals: totals,
		Logger: s.log.With("part", "history"),
	})
	s.addPart("history", rec.Run)
	s.addPart("history-retention", s.history.RunRetention)
	prices, err := loadPriceSheet(s.cfg.PriceSheet)
	if err != nil {
		return err
	}
	s.advisor, err = advisor.New(advisor.Config{
		History: s.history, Workloads: adviceWorkloads{services: svcs, functions: fns},
		Prices: prices, MinHistory: s.cfg.AdviceMinHistory, MaxSince: s.cfg.HistoryRetention,
		Logger: s.log.With("part", "advisor"),
	})
	if err != nil {
		return err
	}
	s.converter = convert.New(convert.Config{
		Routes: routes, Events: s.events, Backend: s.cfg.Backend,
		Logger: s.log.With("part", "convert"),
	})
	return nil
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
	if err := atomicfile.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write token: %w", err)
	}
	return tok, nil
}

func writeClientConfig(path, addr, token, gw string) error {
	b, _ := json.MarshalIndent(map[string]string{"addr": addr, "token": token, "gateway": gw}, "", "  ")
	return atomicfile.WriteFile(path, append(b, '\n'), 0o600)
}

// ready says whether the server serves traffic: its gateway has its first
// routing table.
func (s *Server) ready() error {
	if s.routesSynced == nil {
		return v1.Unavailable("starting")
	}
	select {
	case <-s.routesSynced:
		return nil
	default:
		return v1.Unavailable("the gateway has no routing table yet")
	}
}
