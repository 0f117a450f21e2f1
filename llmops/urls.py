from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import URLPattern, include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.parsers import JSONParser
from rest_framework.views import APIView

from batches import anthropic_apis as batches_anthropic_apis
from batches import apis as batches_apis
from batches import urls as batches_urls
from batches import views as batches_views
from billing import urls as billing_urls
from billing import views as billing_views
from llmops import views
from llmops.limits import StrictJSONParser
from routing import anthropic_apis, openai_apis
from routing import urls as routing_urls
from routing import views as routing_views

admin.site.site_header = "llmops administration"
admin.site.site_title = "llmops"
admin.site.index_title = "Providers, models, workloads, policies, keys and budgets"

# Without DEBUG, errors raised outside any view answer JSON under /v1 and /api/v1 too.
handler400 = views.bad_request
handler403 = views.permission_denied
handler404 = views.page_not_found
handler500 = views.server_error


def api(patterns: list[URLPattern]) -> list[URLPattern]:
    """`patterns` with each view wrapped in views.api_errors, and each DRF view parsing JSON
    with the strict loader every API path shares (llmops.limits)."""
    return [
        URLPattern(p.pattern, views.api_errors(strict_json(p.callback)), p.default_args, p.name)
        for p in patterns
    ]


def strict_json(view):
    """A DRF class-based view rebuilt with StrictJSONParser in place of DRF's JSONParser,
    whose STRICT_JSON refuses NaN but lets 1e999 through as infinity and names no field.
    Function views (the async serving endpoints) parse with llmops.limits themselves."""
    cls = getattr(view, "view_class", None)
    if cls is None or not issubclass(cls, APIView):
        return view
    parsers = [
        StrictJSONParser if issubclass(parser, JSONParser) else parser
        for parser in cls.parser_classes
    ]
    if parsers == list(cls.parser_classes):
        return view
    return cls.as_view(**{**view.initkwargs, "parser_classes": parsers})


# OpenAI's surface for the official SDK (no trailing slashes: it sends none).
openai_compatible = [
    path("v1/chat/completions", openai_apis.chat_completions, name="openai-chat-completions"),
    path("v1/embeddings", openai_apis.embeddings, name="openai-embeddings"),
    path("v1/responses", openai_apis.responses, name="openai-responses"),
    path("v1/responses/<str:response_id>", openai_apis.response_detail, name="openai-response"),
    # One path, both protocols: Anthropic's shape when the call carries anthropic-version.
    path("v1/models", anthropic_apis.models_or(openai_apis.openai_models), name="openai-models"),
    path(
        "v1/models/<path:model_id>",
        anthropic_apis.models_or(openai_apis.openai_models),
        name="openai-model",
    ),
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
]

# Anthropic's surface for the anthropic SDK and Claude Code (ANTHROPIC_BASE_URL).
anthropic_compatible = [
    path("v1/messages", anthropic_apis.messages, name="anthropic-messages"),
    path("v1/messages/count_tokens", anthropic_apis.count_tokens, name="anthropic-count-tokens"),
    path(
        "v1/messages/batches",
        batches_anthropic_apis.MessageBatchCollectionApi.as_view(),
        name="anthropic-message-batches",
    ),
    path(
        "v1/messages/batches/<str:batch_id>",
        batches_anthropic_apis.MessageBatchDetailApi.as_view(),
        name="anthropic-message-batch",
    ),
    path(
        "v1/messages/batches/<str:batch_id>/cancel",
        batches_anthropic_apis.MessageBatchCancelApi.as_view(),
        name="anthropic-message-batch-cancel",
    ),
    path(
        "v1/messages/batches/<str:batch_id>/results",
        batches_anthropic_apis.MessageBatchResultsApi.as_view(),
        name="anthropic-message-batch-results",
    ),
]

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
    path("favicon.ico", views.favicon, name="favicon"),
    path("api/v1/", include(api(routing_urls.urlpatterns))),
    path("api/v1/", include(api(billing_urls.urlpatterns))),
    path("api/v1/", include(api(batches_urls.urlpatterns))),
    *api(anthropic_compatible),
    *api(openai_compatible),
    path("api/schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    # Last: whatever the APIs above do not serve under /v1 and /api/v1 (\b: the prefix itself
    # and anything below it) answers a JSON 404, never an HTML page.
    re_path(r"^v1\b", views.not_served),
    re_path(r"^api/event_logging\b", views.not_served),  # Claude Code's telemetry: not ours
    re_path(r"^api/v1\b", views.not_served),
]
