"""HTTP and WebSocket views, one module per domain, plus shared helpers in web.http."""
