from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from batches import views as batches_views
from llmops import views
from routing import apis as routing_apis
from routing import views as routing_views

admin.site.site_header = "llmops administration"
admin.site.site_title = "llmops"
admin.site.index_title = "Providers, models, workloads, policies, keys and budgets"

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", routing_views.metrics, name="metrics"),
    path("playground/", routing_views.playground, name="playground"),
    path("batches/", batches_views.job_list, name="batch-jobs"),
    path("batches/<int:pk>/", batches_views.job_detail, name="batch-job"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("routing.urls")),
    path("api/v1/", include("billing.urls")),
    path("api/v1/", include("batches.urls")),
    path("v1/chat/completions", routing_apis.chat_completions, name="openai-chat-completions"),
    path("api/schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]
