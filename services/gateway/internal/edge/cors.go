package edge

import (
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/switchyard/switchyard/services/gateway/internal/routes"
)

// corsMiddleware is Echo's CORS middleware for a route's policy. It
// answers preflights (OPTIONS with Access-Control-Request-Method) itself,
// before authentication, as browsers send no credentials on them.
func corsMiddleware(c routes.CORS, methods []string) echo.MiddlewareFunc {
	return middleware.CORSWithConfig(middleware.CORSConfig{
		AllowOrigins:     c.AllowOrigins,
		AllowMethods:     methods,
		AllowHeaders:     c.AllowHeaders,
		ExposeHeaders:    c.ExposeHeaders,
		AllowCredentials: c.AllowCredentials,
		MaxAge:           int(c.MaxAge.Seconds()),
	})
}
