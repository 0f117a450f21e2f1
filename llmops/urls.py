from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from batches import apis as batches_apis
from batches import views as batches_views
from billing import views as billing_views
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
    path("requests/<uuid:pk>/", routing_views.request_detail, name="request-detail"),
    path("batches/", batches_views.job_list, name="batch-jobs"),
    path("billing/", billing_views.overview, name="billing-overview"),
    path("billing/ledger/", billing_views.ledger, name="billing-ledger"),
    path("billing/savings/", billing_views.savings, name="billing-savings"),
    path("billing/audit/", billing_views.audit, name="billing-audit"),
    path("billing/budgets/", billing_views.budgets, name="billing-budgets"),
    path("billing/calculator/", billing_views.calculator, name="billing-calculator"),
    path("batches/<int:pk>/", batches_views.job_detail, name="batch-job"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("routing.urls")),
    path("api/v1/", include("billing.urls")),
    path("api/v1/", include("batches.urls")),
    path("v1/chat/completions", routing_apis.chat_completions, name="openai-chat-completions"),
    # OpenAI's batch workflow for the official SDK (no trailing slashes: it sends none).
    path("v1/files", batches_apis.FileCollectionApi.as_view(), name="openai-files"),
    path("v1/files/<str:file_id>", batches_apis.FileDetailApi.as_view(), name="openai-file"),
    path(
        "v1/files/<str:file_id>/content",
        batches_apis.FileContentApi.as_view(),
        name="openai-file-content",
    ),
    path("v1/batches", batches_apis.BatchCollectionApi.as_view(), name="openai-batches"),
    path("v1/batches/<str:batch_id>", batches_apis.BatchDetailApi.as_view(), name="openai-batch"),
    path(
        "v1/batches/<str:batch_id>/cancel",
        batches_apis.BatchCancelApi.as_view(),
        name="openai-batch-cancel",
    ),
    path("api/schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]
