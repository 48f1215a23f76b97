// Package deps holds the test that keeps the server binary and the light
// library packages light: heavy dependencies (web frameworks, GORM, SQL
// drivers) may be imported only by the leaf package that adapts them.
package deps
