package asl

import (
	"time"
)

// Machine is a parsed and validated state machine: the top-level definition,
// a Parallel branch, or a Map state's ItemProcessor.
type Machine struct {
	Comment string
	StartAt string
	// TimeoutSeconds bounds the whole execution (top level only; 0: none).
	TimeoutSeconds int
	Version        string
	States         map[string]*State
	// Order lists the state names in the order the definition gives them.
	Order []string
}

// State is one state of a Machine. The exported fields describe its shape
// for callers that walk a definition (the engine checking Task resources, a
// UI drawing the graph); the interpreter uses the compiled form beside them.
type State struct {
	Name    string
	Type    string
	Comment string
	Next    string
	End     bool
	// Resource is a Task state's resource URI, as written.
	Resource string
	// Branches are a Parallel state's branches.
	Branches []*Machine
	// ItemProcessor is a Map state's ItemProcessor (or Iterator).
	ItemProcessor *Machine
	// Default and Choices name a Choice state's targets.
	Default string

	field string // "States.Name" (with the path of enclosing states)

	inputPath, outputPath optPath
	parameters            *tmpl
	resultSelector        *tmpl
	resultPath            optPath
	result                any
	hasResult             bool
	retry                 []retrier
	catch                 []catcher

	timeoutSeconds, heartbeatSeconds int
	timeoutPath, heartbeatPath       *jpath

	choices []*rule

	waitSeconds    int
	hasWaitSeconds bool
	secondsPath    *jpath
	timestamp      time.Time
	hasTimestamp   bool
	timestampPath  *jpath

	errorName, cause    string
	errorExpr, causeExp *expr

	itemsPath          *jpath
	itemSelector       *tmpl
	maxConcurrency     int
	maxConcurrencyPath *jpath
}

// optPath is InputPath, OutputPath or ResultPath: absent means "$" (p nil,
// null false), null means "discard" (InputPath/OutputPath: {}).
type optPath struct {
	null bool
	p    *jpath
}

type retrier struct {
	errorEquals     []string
	intervalSeconds int
	maxAttempts     int
	backoffRate     float64
	maxDelaySeconds int
	fullJitter      bool
}

type catcher struct {
	errorEquals []string
	next        string
	resultPath  optPath
}

// rule is a Choice rule: a boolean combination or one data test.
type rule struct {
	next      string
	and, or   []*rule
	not       *rule
	variable  *jpath
	op        string // e.g. "NumericLessThan", "IsNull", "StringMatches"
	value     any    // the literal operand: string, float64, bool or time.Time
	valuePath *jpath // the operand of a *Path operator
}

// expr is a value given as a path or an intrinsic call (ErrorPath, CausePath).
type expr struct {
	path *jpath
	call *intrinsic
}

// tmpl is a compiled payload template (Parameters, ResultSelector, ItemSelector).
type tmpl struct {
	lit    any // when the template has no dynamic part
	static bool
	fields []tfield // object
	elems  []*tmpl  // array
	isArr  bool
	path   *jpath     // a "key.$": "$.path" value
	call   *intrinsic // a "key.$": "States.X(...)" value
}

type tfield struct {
	key string
	val *tmpl
}

// ResourceRef is a Task state's Resource and the Field it is at, so a caller
// can reject resources it cannot run with an error naming the state.
type ResourceRef struct {
	Field    string
	State    string
	Resource string
}

// Resources lists every Task resource of the machine, nested machines included,
// in definition order.
func (m *Machine) Resources() []ResourceRef {
	var out []ResourceRef
	for _, name := range m.Order {
		s := m.States[name]
		if s.Type == "Task" {
			out = append(out, ResourceRef{Field: s.field + ".Resource", State: name, Resource: s.Resource})
		}
		for _, b := range s.Branches {
			out = append(out, b.Resources()...)
		}
		if s.ItemProcessor != nil {
			out = append(out, s.ItemProcessor.Resources()...)
		}
	}
	return out
}
