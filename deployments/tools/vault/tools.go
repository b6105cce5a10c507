//go:build tools

// Package vaulttool pins the Vault server version used by the local stack
// harness; build it with `go build github.com/hashicorp/vault`.
package vaulttool

import _ "github.com/hashicorp/vault"
