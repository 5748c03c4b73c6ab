#!/usr/bin/env pwsh
# azd postprovision hook (Windows / PowerShell). Same behaviour as postprovision.sh: reads
# `azd env get-values`, writes local.settings.json for `func start` (only if it does not exist)
# with exactly the keys of local.settings.sample.json (the values azd knows, the sample's defaults
# for the rest), readable by the current user only (an ACL for that user alone on Windows, chmod 600
# elsewhere), and prints the VS Code mcp.json entry. Never prints a secret; writes one only if the
# user put OBO_CLIENT_SECRET into the azd environment themselves.
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$settingsFile = 'local.settings.json'
$sampleFile = Join-Path (Split-Path -Parent $PSScriptRoot) 'local.settings.sample.json'
$azureCliClientId = '04b07795-8ddb-461a-bbee-02f9e1bf7b46'

# azd prints godotenv lines: KEY="value" with backslash escapes, but integer-like values bare (KEY=123).
$envValues = @{}
foreach ($line in (azd env get-values)) {
    if ($line -match '^([A-Za-z_][A-Za-z0-9_]*)="(.*)"$') {
        $envValues[$Matches[1]] = [regex]::Replace($Matches[2], '\\(.)', '$1')
    }
    elseif ($line -match '^([A-Za-z_][A-Za-z0-9_]*)=(.*)$') {
        $envValues[$Matches[1]] = $Matches[2]
    }
}
if ($LASTEXITCODE -ne 0) { throw 'azd env get-values failed' }

function Get-EnvValue([string]$name) {
    if ($envValues.ContainsKey($name)) { return $envValues[$name] }
    return ''
}

$tenantId = Get-EnvValue 'ENTRA_TENANT_ID'
$clientId = Get-EnvValue 'ENTRA_CLIENT_ID'
$allowedClientIds = Get-EnvValue 'ENTRA_ALLOWED_CLIENT_IDS'
$appIdUri = Get-EnvValue 'ENTRA_APP_ID_URI'
# Empty when the sign-in bridge is off (then ENTRA_ALLOWED_CLIENT_IDS does not contain it either).
$bridgeClientId = Get-EnvValue 'ENTRA_BRIDGE_CLIENT_ID'
$mcpUrl = Get-EnvValue 'MCP_URL'
$customDomain = Get-EnvValue 'MCP_CUSTOM_DOMAIN'
# Output of the deployment: the custom domain whose binding now exists (empty without one).
$boundDomain = Get-EnvValue 'MCP_CUSTOM_DOMAIN_BOUND'
$defaultHost = Get-EnvValue 'AZURE_FUNCTION_APP_HOSTNAME'
$verificationId = Get-EnvValue 'AZURE_CUSTOM_DOMAIN_VERIFICATION_ID'
$clientSecret = Get-EnvValue 'OBO_CLIENT_SECRET'

if (-not $tenantId -or -not $clientId -or -not $allowedClientIds) {
    Write-Error 'postprovision: ENTRA_TENANT_ID, ENTRA_CLIENT_ID or ENTRA_ALLOWED_CLIENT_IDS is missing from the azd environment; did provisioning finish?'
    exit 1
}

# Makes the file readable and writable by the current user only.
function Protect-SettingsFile([string]$path) {
    if ([System.Environment]::OSVersion.Platform -eq [System.PlatformID]::Win32NT) {
        # No inherited entries; full control for the current user's SID alone.
        $sid = [System.Security.Principal.WindowsIdentity]::GetCurrent().User.Value
        & icacls.exe $path /inheritance:r /grant:r "*${sid}:(F)" | Out-Null
        if ($LASTEXITCODE -ne 0) { throw "icacls could not restrict $path to the current user" }
    }
    else {
        & chmod 600 $path
        if ($LASTEXITCODE -ne 0) { throw "chmod 600 $path failed" }
    }
}

if (Test-Path $settingsFile) {
    Write-Host "$settingsFile already exists; left unchanged. For local runs against this deployment it should contain:"
    Write-Host "  ENTRA_TENANT_ID=$tenantId"
    Write-Host "  ENTRA_CLIENT_ID=$clientId"
    Write-Host "  ENTRA_ALLOWED_CLIENT_IDS=$allowedClientIds"
    Write-Host "  ENTRA_APP_ID_URI=$appIdUri"
    if ($bridgeClientId) { Write-Host "  ENTRA_BRIDGE_CLIENT_ID=$bridgeClientId" }
    if ($clientSecret) { Write-Host '  OBO_CLIENT_SECRET=<the value you set with azd env set; not shown>' }
}
else {
    if (-not (Test-Path $sampleFile)) { throw "postprovision: $sampleFile not found; it lists the keys of local.settings.json." }
    # The values azd knows; every other key keeps the sample's default (e.g. MCP_ALLOWED_ORIGINS for the
    # MCP Inspector). The managed identity exists only in Azure, so local on-behalf-of uses a client
    # secret, and only when the user asked for one.
    $known = @{
        'ENTRA_TENANT_ID'          = $tenantId
        'ENTRA_CLIENT_ID'          = $clientId
        'ENTRA_ALLOWED_CLIENT_IDS' = $allowedClientIds
        'ENTRA_APP_ID_URI'         = $appIdUri
        'ENTRA_BRIDGE_CLIENT_ID'   = $bridgeClientId
        'OBO_CLIENT_SECRET'        = $clientSecret
    }
    $sample = Get-Content -Raw -Path $sampleFile | ConvertFrom-Json
    $values = [ordered]@{}
    foreach ($property in $sample.Values.PSObject.Properties) {
        if ($known.ContainsKey($property.Name)) { $values[$property.Name] = $known[$property.Name] }
        else { $values[$property.Name] = $property.Value }
    }
    $json = [ordered]@{ IsEncrypted = $false; Values = $values } | ConvertTo-Json -Depth 4
    # Create the file empty and restrict it before any value (a secret among them) is written into it.
    $settingsPath = Join-Path (Get-Location).Path $settingsFile
    New-Item -ItemType File -Path $settingsPath | Out-Null
    Protect-SettingsFile $settingsPath
    [System.IO.File]::WriteAllText($settingsPath, $json, (New-Object System.Text.UTF8Encoding $false))
    Write-Host "Wrote $settingsFile (readable by you only) for local runs (func start) against app registration $clientId."
}

if ((",$allowedClientIds,") -like "*,$azureCliClientId,*") {
    Write-Host 'Development environment: the Azure CLI is allowed and http://localhost:7071/consent is registered.'
}
else {
    Write-Host 'The Azure CLI is not allowed and http://localhost:7071/consent is not registered (production defaults).'
    Write-Host 'For a development environment: azd env set MCP_DEVELOPMENT_ENVIRONMENT true; azd provision'
}

Write-Host ''
Write-Host "MCP server URL: $mcpUrl"
Write-Host "VS Code: add this server to .vscode/mcp.json (or answer the 'azure' prompt with the URL above):"
$entry = [ordered]@{ servers = [ordered]@{ azure = [ordered]@{ type = 'http'; url = $mcpUrl } } }
Write-Host ($entry | ConvertTo-Json -Depth 4)

if (-not $customDomain) {
    Write-Host ''
    if ($bridgeClientId) {
        Write-Host "No custom domain set: MCP clients sign in through the sign-in bridge (app registration $bridgeClientId)."
        Write-Host 'To use your own domain instead (see docs/deploy.md), DNS records for a subdomain such as mcp.contoso.com:'
    }
    else {
        Write-Host "No custom domain set and the sign-in bridge is off. VS Code and other clients that send the OAuth"
        Write-Host "'resource' parameter need a custom domain (see docs/deploy.md) or the bridge (azd env set MCP_SIGN_IN_BRIDGE true)."
        Write-Host 'DNS records for a subdomain such as mcp.contoso.com:'
    }
    Write-Host "  CNAME mcp        -> $defaultHost"
    Write-Host "  TXT   asuid.mcp  -> $verificationId"
    Write-Host 'then: azd env set MCP_CUSTOM_DOMAIN mcp.contoso.com; azd up'
}
elseif ($boundDomain) {
    Write-Host ''
    Write-Host "Custom domain $boundDomain is bound with SNI TLS; later provisions update only its certificate and"
    Write-Host 'SNI binding (MCP_CUSTOM_DOMAIN_BOUND). To bind it again: azd env set MCP_CUSTOM_DOMAIN_BOUND rebind; azd provision'
}
