// Package handlerregistry maps names to handlers: the worker's job
// handlers and the gateway's sync handlers are both registered by name in
// Go and named in configuration files.
package handlerregistry

import (
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Registry maps handler names to handlers of type H. It is safe for
// concurrent use.
type Registry[H any] struct {
	mu       sync.RWMutex
	handlers map[string]H
}

// New returns an empty registry.
func New[H any]() *Registry[H] { return &Registry[H]{handlers: map[string]H{}} }

// Register adds h under name; an empty name, a nil handler or registering
// a name twice is an error.
func (r *Registry[H]) Register(name string, h H) error {
	if name == "" || any(h) == nil {
		return errors.New("a handler needs a name and an implementation")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.handlers[name]; dup {
		return fmt.Errorf("handler %q registered twice", name)
	}
	r.handlers[name] = h
	return nil
}

// Lookup returns the handler registered as name.
func (r *Registry[H]) Lookup(name string) (H, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	h, ok := r.handlers[name]
	return h, ok
}

// Has reports whether a handler is registered as name.
func (r *Registry[H]) Has(name string) bool {
	_, ok := r.Lookup(name)
	return ok
}

// Names lists registered handler names, sorted.
func (r *Registry[H]) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.handlers))
	for n := range r.handlers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
