"""`fracture-edge serve`: a web page and JSON API around one Classifier (starlette + uvicorn, no TensorFlow).

    app.py     ServeOptions, create_app (the routes) and serve (uvicorn)
    cli.py     the `serve` subcommand
    guard.py   the HTTP-level guards: token, Host check, CSP and framing headers
    upload.py  upload bodies read into memory, bounded in size, time and number
    page.html, page.js, page.css   the page, served as /, /page.js and /page.css (package data)
"""
