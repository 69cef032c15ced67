from django.urls import path

from apps.detection import api

urlpatterns = [path("contracts", api.ContractsApi.as_view(), name="api-contracts")]
