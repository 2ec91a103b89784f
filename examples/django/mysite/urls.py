from django.conf import settings
from django.urls import include, path
from django.views.generic import TemplateView

from mysite.staywire_proxy import proxy

urlpatterns = [
    path("accounts/", include("django.contrib.auth.urls")),  # login and logout views
    path("staywire/", include(proxy.urls)),  # what Staywire's *_proxy_url options name
    path("", TemplateView.as_view(template_name="index.html",
                                  extra_context={"staywire_url": settings.STAYWIRE_URL})),
]
