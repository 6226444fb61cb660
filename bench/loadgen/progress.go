package loadgen

// Issued is how many requests the load has started so far; callers use it
// to wait until load is flowing before they change something under it.
func (l *Load) Issued() int64 { return l.issued.Load() }
