"""Outbound HTTP: WeChat's mini-program API and the image hosts posters draw from."""
