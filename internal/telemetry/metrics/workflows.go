package metrics

import "github.com/prometheus/client_golang/prometheus"

// Workflows counts the workflow engine's executions: it is the engine's
// Observer (engine.Config.Observer) and a collector the composition root
// registers. It lives here rather than in the engine so that the engine
// needs no metrics library, only the small interface it declares.
type Workflows struct {
	running     *prometheus.GaugeVec
	finished    *prometheus.CounterVec
	transitions *prometheus.CounterVec
}

// NewWorkflows builds the workflow metrics, empty.
func NewWorkflows() *Workflows {
	return &Workflows{
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_workflow_executions_running",
			Help: "Workflow executions not finished.",
		}, []string{"environment", "workflow"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_workflow_executions_total",
			Help: "Workflow executions finished, by final status.",
		}, []string{"environment", "workflow", "status"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_workflow_transitions_total",
			Help: "States entered by a workflow's executions.",
		}, []string{"environment", "workflow"}),
	}
}

// ExecutionStarted counts an execution running in this engine; a workflow
// gets its series from its first one on, transitions at 0.
func (w *Workflows) ExecutionStarted(env, workflow string) {
	w.running.WithLabelValues(env, workflow).Inc()
	w.transitions.WithLabelValues(env, workflow)
}

// ExecutionFinished counts an execution that reached its final status.
func (w *Workflows) ExecutionFinished(env, workflow, status string) {
	w.running.WithLabelValues(env, workflow).Dec()
	w.finished.WithLabelValues(env, workflow, status).Inc()
}

// ExecutionLeft takes out an execution this engine stopped running without
// it finishing: the next engine resumes and counts it.
func (w *Workflows) ExecutionLeft(env, workflow string) {
	w.running.WithLabelValues(env, workflow).Dec()
}

// StateEntered counts a state entered.
func (w *Workflows) StateEntered(env, workflow string) {
	w.transitions.WithLabelValues(env, workflow).Inc()
}

func (w *Workflows) Describe(ch chan<- *prometheus.Desc) {
	w.running.Describe(ch)
	w.finished.Describe(ch)
	w.transitions.Describe(ch)
}

func (w *Workflows) Collect(ch chan<- prometheus.Metric) {
	w.running.Collect(ch)
	w.finished.Collect(ch)
	w.transitions.Collect(ch)
}
