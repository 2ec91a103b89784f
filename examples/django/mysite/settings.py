from pathlib import Path

import staywire

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "change-me"  # your project's own
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "mysite.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [BASE_DIR / "mysite" / "templates"],
    "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                       "django.contrib.auth.context_processors.auth"]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": BASE_DIR / "db.sqlite3"}}
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

# The browser client, served by Django as /static/staywire/staywire.js.
STATIC_URL = "static/"
STATICFILES_DIRS = [("staywire", Path(staywire.__file__).parent / "static")]

# Where the page opens its Staywire connection (staywire.toml's host and port), and how
# long Staywire trusts a session before asking again: a logout ends a socket this late.
STAYWIRE_URL = "ws://127.0.0.1:8765/ws"
STAYWIRE_CHECK_EVERY = 60.0
